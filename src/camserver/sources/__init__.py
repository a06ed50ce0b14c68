"""Everything that brings frames in.

A :class:`Source` runs one session with a camera and hands each whole JPEG to its
:class:`FrameSink`; a :class:`Supervisor` runs it session after session for one stream
(backoff with jitter, the healthy-reset rule, state, ``last_error``, ``retry_at``) and
publishes to the stream's hub. A new kind of source is one module here and one line in
:data:`KINDS`.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from camserver.netguard import NetworkGuard
from camserver.schema import StreamConfig
from camserver.schema.esphome import DEFAULT_API_PORT
from camserver.sources.base import FrameSink, Source, SourceTiming
from camserver.sources.http_pull import HttpPull
from camserver.sources.push import PushSource
from camserver.sources.supervisor import Supervisor

__all__ = [
    "KINDS",
    "FrameSink",
    "PushSource",
    "Source",
    "SourceTiming",
    "Supervisor",
    "esphome_url",
    "source_for",
    "target_of",
    "target_url",
]

SourceFactory = Callable[[StreamConfig, httpx.AsyncClient, SourceTiming, NetworkGuard], Source]


def _esphome(
    cfg: StreamConfig, client: httpx.AsyncClient, timing: SourceTiming, guard: NetworkGuard
) -> Source:
    # aioesphomeapi (protobuf, Noise, zeroconf: ~20 MB) loads with the first ESPHome camera.
    from camserver.sources.esphome import EsphomeSource

    return EsphomeSource.for_config(cfg, client, timing, guard)


KINDS: dict[str, SourceFactory] = {
    "http": HttpPull.for_config,
    "push": PushSource.for_config,
    "esphome": _esphome,
}
"""Source kinds by name (``StreamConfig.source``): what a stream's configuration connects
with."""


def esphome_url(cfg: StreamConfig) -> str | None:
    """``esphome://host:port/`` for an ESPHome camera (what the network guard checks)."""
    if not cfg.esphome or cfg.host is None:
        return None
    return f"esphome://{cfg.host}:{cfg.port or DEFAULT_API_PORT}/"


def kind_of(cfg: StreamConfig) -> str:
    """The source kind a stream uses."""
    return cfg.source


def target_of(cfg: StreamConfig) -> tuple[str | None, ...]:
    """What a stream's source connects with: a change makes a new source."""
    if cfg.pushed:  # a new key or interval keeps the source (PushSource.reconfigure)
        return ("push",)
    if cfg.esphome:
        return ("esphome", cfg.host, str(cfg.port), cfg.encryption_key, cfg.password)
    return ("http", cfg.stream_url, cfg.username, cfg.password, cfg.auth_scheme)


def target_url(cfg: StreamConfig) -> str:
    """The URL a stream's camera is reached at (``esphome://host:port/`` for ESPHome),
    by which discovery recognises a camera already added; '' for a push camera."""
    return cfg.stream_url or esphome_url(cfg) or ""


def source_for(
    cfg: StreamConfig, client: httpx.AsyncClient, timing: SourceTiming, guard: NetworkGuard
) -> Source:
    return KINDS[kind_of(cfg)](cfg, client, timing, guard)
