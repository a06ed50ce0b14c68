"""Tokens for tests: the ``locked`` server's admin and view tokens (``tests/conftest.py``)
and the header that presents one.
"""

from __future__ import annotations

ADMIN, VIEW = "admin-Secret-0001", "view-Secret-00002"
"""The admin and view tokens of the ``locked`` server (``tests/conftest.py``)."""


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
