"""Helpers that several test files share (no test file imports another:
tests/test_architecture.py).
"""
