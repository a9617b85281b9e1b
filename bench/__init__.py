"""Loupe's speed benchmark: the tutorial way against Loupe's own inference path.

Run `python -m bench` (or `make bench`); see bench/README.md. Not part of the test suite.
"""
