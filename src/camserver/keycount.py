"""Counts per key (a client address, say) that forget a key once its count is back to 0:
the per-address limits keep no entry for an address that holds nothing."""

from __future__ import annotations

__all__ = ["KeyCounts"]


class KeyCounts(dict[str, int]):
    """How many each key holds; a key that holds none is not in it."""

    def add(self, key: str) -> None:
        self[key] = self.get(key, 0) + 1

    def remove(self, key: str) -> None:
        """One fewer for ``key`` (a key not in it stays out)."""
        left = self.get(key, 0) - 1
        if left > 0:
            self[key] = left
        else:
            self.pop(key, None)
