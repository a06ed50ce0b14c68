"""Logging: human-readable lines by default, JSON lines with ``--log-format json``.

Stream state changes carry ``stream``, ``state`` and ``reason`` as fields, so one JSON line
says which camera changed, to what, and why. No frame data and no tokens are ever logged.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any, Literal
from urllib.parse import unquote_plus

__all__ = [
    "CollapseHandlerErrors",
    "JsonFormatter",
    "LogFormat",
    "RedactTokens",
    "setup_logging",
]

LogFormat = Literal["text", "json"]
_EXTRA_FIELDS = ("stream", "state", "reason")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in _EXTRA_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


_SECRET_PARAMS = frozenset({"token", "key"})
"""Query parameters that carry a secret: a token, a push camera's key."""


class RedactTokens(logging.Filter):
    """Scrubs token values and push keys (``?key=``) from log records (uvicorn's access
    log prints query strings).

    A parameter counts as the token by its *decoded* name, as the server reads it: the
    server accepts ``?%74oken=…`` as ``?token=…``, so the redaction must catch it too.
    """

    _PARAM = re.compile(r"(?<=[?&])([^=&\s\"'#]+)=([^&\s\"'#]*)")

    @classmethod
    def _scrub(cls, text: str) -> str:
        def redact(m: re.Match[str]) -> str:
            return f"{m.group(1)}=***" if unquote_plus(m.group(1)) in _SECRET_PARAMS else m.group(0)

        return cls._PARAM.sub(redact, text) if "=" in text else text

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self._scrub(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = self._scrub(record.msg)
        return True


class CollapseHandlerErrors(logging.Filter):
    """python-engineio logs a full traceback each time a client's packet cannot be handled
    ("message async handler error"): 9 KB of malformed packets made 6 MB of log. Such a
    record becomes one line, at most one per ``every`` seconds, saying how many were
    dropped in between."""

    def __init__(self, every: float = 10.0) -> None:
        super().__init__()
        self.every = every
        self._last = -every
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info or "handler error" not in str(record.msg):
            return True
        now = time.monotonic()
        if now - self._last < self.every:
            self._dropped += 1
            return False
        exc = record.exc_info[1]
        record.msg = "socket.io: a client's packet could not be handled: %s (%d more since)"
        record.args = (f"{type(exc).__name__}: {exc}"[:200], self._dropped)
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        self._last, self._dropped = now, 0
        return True


def setup_logging(level: str, fmt: LogFormat = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(RedactTokens())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)
