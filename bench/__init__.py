"""Reproducible benchmarks that print comparable figures."""
