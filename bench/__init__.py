"""Benchmarks and data seeding (not part of the installed package)."""
