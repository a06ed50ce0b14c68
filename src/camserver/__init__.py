"""camserver: self-hosted ESP32-CAM server with live fan-out."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("camserver")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["__version__"]
