"""Who needs a camera, and why, counted in one place per stream.

People and programs watching (MJPEG, Socket.IO, snapshots, later RTSP) are *viewers*, by
kind and by client address (viewers per client are capped). The recorder and the motion
detector are not viewers: they are *needs* with a name (``recording``, ``motion``). A camera
set ``on_demand`` is connected while it is :attr:`~StreamDemand.needed` for any reason.
What the stream's status shows as ``demand`` comes from :meth:`StreamDemand.reasons`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from camserver.keycount import KeyCounts
from camserver.schema import Demand

__all__ = ["StreamDemand"]


class StreamDemand:
    """The demand on one stream. Use it from the event loop only."""

    __slots__ = ("_clients", "_counted_clients", "_kinds", "_needs", "on_change")

    def __init__(self) -> None:
        self.on_change: Callable[[], None] | None = None
        """Called whenever the viewers or the needs change."""
        self._kinds: dict[str, int] = {}
        self._clients = KeyCounts()
        self._counted_clients: dict[str, dict[str, int]] = {}
        self._needs: set[str] = set()

    @property
    def viewers(self) -> int:
        """People and programs watching, of every kind."""
        return sum(self._kinds.values())

    @property
    def needed(self) -> bool:
        """Someone watches, or something (recording, motion) needs the frames."""
        return bool(self._needs) or self.viewers > 0

    def viewers_by_kind(self) -> dict[str, int]:
        return dict(self._kinds)

    def viewers_from(self, client: str) -> int:
        """Viewers from the client address ``client``, of every kind."""
        return self._clients.get(client, 0) + sum(
            counts.get(client, 0) for counts in self._counted_clients.values()
        )

    @contextmanager
    def viewer(self, kind: str, client: str | None = None) -> Iterator[None]:
        """Count a viewer of ``kind`` (from address ``client``) while the block runs."""
        self._kinds[kind] = self._kinds.get(kind, 0) + 1
        if client is not None:
            self._clients.add(client)
        self._changed()
        try:
            yield
        finally:
            self._kinds[kind] -= 1
            if client is not None:
                self._clients.remove(client)
            self._changed()

    def set_viewers(self, kind: str, count: int, clients: dict[str, int] | None = None) -> None:
        """Set the count of viewers tracked elsewhere (e.g. Socket.IO room members), and
        how many of them each client address has."""
        self._counted_clients[kind] = clients or {}
        if self._kinds.get(kind, 0) != count:
            self._kinds[kind] = count
            self._changed()

    def count_viewer(self, kind: str, client: str, delta: int) -> None:
        """One viewer of ``kind`` tracked elsewhere (e.g. a Socket.IO room member) from
        address ``client`` came (``delta`` 1) or went (-1): O(1), so that a burst of joins
        costs each join the same, however many came before."""
        clients = self._counted_clients.setdefault(kind, {})
        if delta < 0 and clients.get(client, 0) == 0:
            return  # not counted here (e.g. it joined a stream of this name since deleted)
        left = clients.get(client, 0) + delta
        if left > 0:
            clients[client] = left
        else:
            clients.pop(client, None)
        self._kinds[kind] = max(0, self._kinds.get(kind, 0) + delta)
        self._changed()

    def need(self, reason: str, on: bool = True) -> None:
        """``reason`` (``recording``, ``motion``) needs the frames, or no longer does."""
        if (reason in self._needs) != on:
            if on:
                self._needs.add(reason)
            else:
                self._needs.discard(reason)
            self._changed()

    def reasons(self, viewers: int | None = None, remote: int = 0) -> Demand:
        """The demand as the stream's status shows it (``viewers``: counted elsewhere, as a
        cluster does across nodes)."""
        return Demand(
            viewers=self.viewers if viewers is None else viewers,
            recording="recording" in self._needs,
            motion="motion" in self._needs,
            remote=remote,
        )

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()
