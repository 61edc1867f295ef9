"""The package's rooms import only downward, and the README's layout names every module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "spp_search"
# a room may import itself and the rooms of a lower rank (model and data are siblings: neither
# imports the other); the top-level modules (cli, __init__, __main__) may import any room
RANK = {"infra": 0, "backends": 1, "model": 2, "data": 2, "config": 3, "trial": 4, "study": 5, "results": 6}
RANK["doctor"] = 7


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _room(path: Path) -> str | None:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else None


def _imported_rooms(path: Path) -> set[str]:
    """Rooms ``path`` imports, at module level or inside functions."""
    rooms = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "spp_search" and len(parts) > 1 and parts[1] in RANK:
                rooms.add(parts[1])
    return rooms


def test_rooms_import_only_downward():
    wrong = []
    for path in _modules():
        room = _room(path)
        if room is None or room == "experiments":
            continue
        for other in _imported_rooms(path) - {room}:
            if RANK[other] >= RANK[room]:
                wrong.append(f"{path.relative_to(ROOT)} imports spp_search.{other}")
    assert not wrong, wrong


def test_every_room_says_what_it_is_for():
    for init in PACKAGE.glob("*/__init__.py"):
        assert ast.get_docstring(ast.parse(init.read_text())), f"{init.relative_to(ROOT)} has no docstring"


def test_the_readme_layout_names_every_module():
    """Every module of the package starts a line of the README's Layout section (``spp_search/room/module.py``)."""
    text = (ROOT / "README.md").read_text()
    layout = text[text.index("## Layout") :]
    layout = layout[: layout.find("\n## ", 4)] if "\n## " in layout[4:] else layout
    names = [p.relative_to(ROOT).as_posix() for p in _modules() if p.name != "__init__.py" or p.parent == PACKAGE]
    missing = [n for n in names if "/experiments/" not in n and not re.search(rf"^{re.escape(n)}\s", layout, re.M)]
    assert not missing, f"README's Layout does not name: {missing}"


def test_every_room_is_a_package_the_wheel_ships():
    """A room missing from pyproject's package list is left out of a non-editable install (the
    images' `pip install .`): spp_search.doctor was, so `doctor` failed only in a container."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    rooms = {f"spp_search.{p.parent.name}" for p in PACKAGE.glob("*/__init__.py")}
    assert rooms - listed == set()
