"""Benchmarks: each writes JSON under benchmarks/results/ (run with ``python -m benchmarks.<name>``)."""
