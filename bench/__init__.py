"""Benchmarks: scripts that print tables, never timed assertions (see bench/README.md)."""
