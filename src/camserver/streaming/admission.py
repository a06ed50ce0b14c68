"""Viewer admission: one more viewer of a stream, or a clear refusal.

Every kind of viewer (MJPEG, Socket.IO, snapshots, later RTSP) is admitted here against the
stream's cap and the per-client cap, so one client cannot take every place."""

from __future__ import annotations

from typing import TYPE_CHECKING

from camserver.errors import TooManyViewers
from camserver.streaming.hub import LocalHub

if TYPE_CHECKING:
    from camserver.streaming.registry import StreamRegistry

__all__ = ["Admission"]


class Admission:
    def __init__(
        self, registry: StreamRegistry, max_viewers: int, max_viewers_per_client: int
    ) -> None:
        self._registry = registry
        self.max_viewers = max_viewers
        self.max_viewers_per_client = max_viewers_per_client

    def admit(self, name: str, client: str | None = None) -> LocalHub:
        """The hub of ``name`` for one more viewer of any kind from address ``client``.

        Raises StreamNotFound, or TooManyViewers when the stream has ``max_viewers``, or
        that client ``max_viewers_per_client`` of them (one client must not take them all).
        """
        hub = self._registry.hub(name)
        if hub.viewers >= self.max_viewers:
            raise TooManyViewers(f"stream {name!r} has its maximum of {self.max_viewers} viewers")
        if client is not None and hub.demand.viewers_from(client) >= self.max_viewers_per_client:
            raise TooManyViewers(
                f"{client} already watches stream {name!r} {self.max_viewers_per_client} times "
                "(CAMSERVER_MAX_VIEWERS_PER_CLIENT)"
            )
        return hub
