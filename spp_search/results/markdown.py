"""Markdown tables, for the report and the pages generated from results (light: no imports)."""

from __future__ import annotations


def table_lines(header: list[str], rows: list[list]) -> list[str]:
    """A Markdown table as lines."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]


def md_table(header: list[str], rows: list[list]) -> str:
    """A Markdown table as one string."""
    return "\n".join(table_lines(header, rows))
