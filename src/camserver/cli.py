"""The ``camserver`` command: ``serve``, ``config``, ``discover``, ``watch`` and ``sim``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError

from camserver import __version__
from camserver.client import watch
from camserver.config import Settings, setting_names
from camserver.connections import raise_open_files_limit
from camserver.errors import ConfigError
from camserver.logs import setup_logging
from camserver.schema.urls import mask_url

__all__ = ["main"]

log = logging.getLogger("camserver")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="camserver", description="Self-hosted ESP32-CAM server: one upstream per camera."
    )
    p.add_argument("--version", action="version", version=f"camserver {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    for name, text in (
        ("serve", "run the server (flags override CAMSERVER_* variables)"),
        ("config", "print the effective configuration and where each value comes from"),
    ):
        s = sub.add_parser(name, help=text)
        s.add_argument("--host", help="address to listen on (CAMSERVER_HOST, default 127.0.0.1)")
        s.add_argument("--port", type=int, help="port to listen on (CAMSERVER_PORT, default 8000)")
        s.add_argument("--db", type=Path, help="SQLite file (CAMSERVER_DB)")
        s.add_argument("--demo", type=int, metavar="N", help="start N simulated cameras too")
        s.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
        s.add_argument("--log-format", choices=["text", "json"], help="text (default) or json")
        s.add_argument(
            "--discovery-interfaces",
            metavar="NAMES",
            help="interfaces to probe: auto, none, or names like lo,eth0 (--demo: lo)",
        )
        s.add_argument(
            "--redis-url",
            metavar="URL",
            help="cluster mode: the Redis server the nodes share (CAMSERVER_REDIS_URL)",
        )
        s.add_argument("--node-id", help="this node's name in the cluster (CAMSERVER_NODE_ID)")

    d = sub.add_parser("discover", help="probe for cameras once and list those that answer")
    d.add_argument(
        "--interface",
        action="append",
        metavar="NAME",
        help="interface to probe (repeatable; default CAMSERVER_DISCOVERY_INTERFACES or auto)",
    )
    d.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for answers")
    d.add_argument("--port", type=int, help="UDP port cameras listen on (default 8888)")
    d.add_argument("--json", action="store_true", help="print JSON instead of a table")

    w = sub.add_parser("watch", help="a stream's live frame rate and latency, a line a second")
    watch.add_arguments(w)

    m = sub.add_parser("sim", help="run simulated ESP32-CAMs (Ctrl-C stops them)")
    m.add_argument("--count", type=int, default=1)
    m.add_argument("--host", default="127.0.0.1")
    m.add_argument(
        "--http-port",
        type=int,
        default=8080,
        help="camera i answers HTTP on P+2i and streams on P+2i+1",
    )
    m.add_argument("--fps", type=float, default=15.0)
    m.add_argument("--framesize", default="VGA", help="QVGA, VGA, SVGA, ... or a number")
    m.add_argument("--quality", type=int, default=10, help="4 (best) .. 63")
    m.add_argument(
        "--replay",
        type=int,
        default=0,
        metavar="K",
        help="pre-encode K frames and replay them (cheap, for benchmarks)",
    )
    m.add_argument("--name-prefix", default="esp32-cam-")
    for flag, kind, text in (
        ("--drop-every", int, "close the stream mid-frame every N frames"),
        ("--stall-seconds", float, "send nothing for S seconds (see --stall-every)"),
        ("--stall-every", int, "stall every N frames (default: once)"),
        ("--truncate-every", int, "send a truncated JPEG every N frames"),
        ("--garbage-every", int, "send garbage between parts every N frames"),
    ):
        m.add_argument(flag, type=kind, default=0, help=text)
    m.add_argument("--http-500", action="store_true", help="the stream answers HTTP 500")
    m.add_argument("--refuse", action="store_true", help="the stream port refuses connections")
    m.add_argument(
        "--discovery-port",
        type=int,
        default=8888,
        help="UDP port to answer probes on (0: do not answer)",
    )
    m.add_argument(
        "--discovery-listen-port",
        type=int,
        default=8888,
        help="UDP port of the server, to announce to at start (0: do not announce)",
    )
    m.add_argument(
        "--announce-format",
        choices=["json", "legacy"],
        default="json",
        help="json, or legacy ESP32_CAMERA:<ip>:<port>",
    )
    m.add_argument("--login", metavar="USER:PASSWORD", help="require an HTTP login")
    m.add_argument(
        "--embed-time",
        action="store_true",
        help="put the send time in each streamed JPEG (a COM segment), for latency benchmarks",
    )
    m.add_argument("--login-scheme", choices=["basic", "digest"], default="basic")
    m.add_argument(
        "--push",
        metavar="URL",
        help="push to camserver instead of waiting to be pulled: a URL of the push block "
        "that POST /api/streams answered (ws_url, frame_url or mjpeg_url)",
    )
    m.add_argument("--key", help="the stream's push key (with --push)")
    m.add_argument(
        "--push-mode",
        choices=["ws", "frame", "mjpeg"],
        default="ws",
        help="ws: a WebSocket; frame: post a picture and sleep; mjpeg: a multipart POST",
    )
    m.add_argument(
        "--every",
        type=float,
        metavar="S",
        help="frame mode: seconds between pictures when the server names no next_in",
    )
    m.add_argument(
        "--esphome",
        action="store_true",
        help="be an ESPHome device too: its native API (camera, flash, switch)",
    )
    m.add_argument(
        "--esphome-port",
        type=int,
        default=6053,
        metavar="P",
        help="camera i serves ESPHome's API on P+i (default 6053; 0: any free port, "
        "shown at start and in /sim/esphome)",
    )
    m.add_argument(
        "--encryption-key",
        metavar="K",
        help="with --esphome: the API's Noise key (base64, 32 bytes); none: plaintext",
    )
    m.add_argument("--api-password", help="with --esphome: an API password (old firmware)")
    m.add_argument(
        "--no-camera",
        action="store_true",
        help="with --esphome: the device lists no camera entity",
    )
    m.add_argument(
        "--mdns-interface",
        action="append",
        metavar="ADDRESS",
        help="with --esphome: announce _esphomelib._tcp over mDNS on the interface with "
        "this address (repeatable; default: no announcement)",
    )
    return p


# Settings that the serve and config commands also take as flags.
FLAGS = {
    "host": "--host",
    "port": "--port",
    "db": "--db",
    "demo": "--demo",
    "log_level": "--log-level",
    "log_format": "--log-format",
    "discovery_interfaces": "--discovery-interfaces",
    "redis_url": "--redis-url",
    "node_id": "--node-id",
}


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in FLAGS if getattr(args, k, None) is not None}


def _settings(args: argparse.Namespace) -> Settings | None:
    try:
        return Settings(**_overrides(args))
    except ValidationError as exc:
        # Each error's field and message, never the value given: it may be a secret
        # (a token, a Redis or webhook URL with its password), and pydantic's own text
        # repeats it.
        for error in exc.errors(include_url=False, include_input=False):
            where = ".".join(str(part) for part in error["loc"]) or "settings"
            print(f"camserver: invalid setting {where}: {error['msg']}", file=sys.stderr)
        return None


def _config(args: argparse.Namespace) -> int:
    """Every setting, its effective value (secrets redacted) and where it came from."""
    settings = _settings(args)
    if settings is None:
        return 2
    flags = _overrides(args)
    width = max(len(n) for n in setting_names())
    for name in setting_names():
        value = getattr(settings, name)
        env = f"CAMSERVER_{name.upper()}"
        if name in flags:
            source = f"flag {FLAGS[name]}"
        elif env in os.environ:
            source = f"env {env}"
        else:
            source = "default"
        if name == "webhook_urls":  # which receivers, not their secrets
            shown = ", ".join(mask_url(url) for url in settings.webhook_list()) or "(empty)"
        elif isinstance(value, SecretStr):
            shown = "*** (set)"
        elif value is None:
            shown = "(not set)"
        else:
            shown = str(value)
        print(f"{name:<{width}}  {shown:<40}  {source}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from camserver.app import create_app, uvicorn_options
    from camserver.store import check_database

    settings = _settings(args)
    if settings is None:
        return 2
    setup_logging(settings.log_level, settings.log_format)
    try:
        if not settings.cluster:  # cluster nodes keep their streams in Redis
            check_database(settings.db)  # a clear message now beats a traceback at startup
        else:
            from camserver.cluster.connect import check_login

            check_login(settings)  # a wrong password stops the node now, readably
    except ConfigError as exc:
        print(f"camserver: {exc}", file=sys.stderr)
        return 2
    # Everything the server writes is its own: the database, recordings, event snapshots,
    # clips (PyAV's files included: FFmpeg creates them with the process umask). The
    # recordings were 0644 in 0755 folders while the database was 0600.
    os.umask(0o077)
    cameras = None
    if settings.demo:
        from camserver.demo import demo_cameras

        # demo-push connects to this server as a camera on the Internet would.
        local = "127.0.0.1" if settings.host in ("0.0.0.0", "", "::") else settings.host
        local = f"[{local}]" if ":" in local else local
        cameras = demo_cameras(settings.demo, f"http://{local}:{settings.port}")
    app = create_app(settings, cameras=cameras)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        log_level=settings.log_level,
        **uvicorn_options(app),
    )

    class Server(uvicorn.Server):
        _exit: asyncio.Event | None = None

        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            # End MJPEG responses and Socket.IO frame loops now, so the graceful
            # shutdown does not wait out its timeout on endless responses.
            loop = asyncio.get_event_loop()
            loop.call_soon_threadsafe(app.begin_shutdown)
            if self._exit is not None:
                loop.call_soon_threadsafe(self._exit.set)

        async def main_loop(self) -> None:
            # uvicorn's loop wakes ten times a second to look at should_exit (and once a
            # second of those, to refresh the Date header): here once a second, and at
            # once on a signal. Each wake-up costs an idle server ~0.15 ms of CPU: uvicorn's
            # alone were half of what an idle camserver spent.
            self._exit = asyncio.Event()
            counter = 0  # (a multiple of 10: on_tick's once-a-second work every time)
            while not await self.on_tick(counter):
                counter = (counter + 10) % 864000
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._exit.wait(), 1.0)

    server = Server(config)
    if not settings.auth_enabled:
        log.warning(
            "no CAMSERVER_API_TOKEN set: anyone who can reach http://%s:%d/ can view and "
            "control the cameras%s",
            settings.host,
            settings.port,
            "" if settings.host.startswith("127.") else " (set a token on a shared network)",
        )
    log.info("open http://%s:%d/ in a browser", settings.host, settings.port)
    raise_open_files_limit()  # (camserver.connections)
    # Long-lived objects made at start-up need no collecting; fewer, larger collections
    # keep full-GC pauses from stalling fan-out (docs/facts.md#perf).
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal with the
    # previous handler: make that handler a clean exit instead of death by signal.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    return 0


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


async def _run_sims(args: argparse.Namespace) -> None:
    from camserver.discovery.interfaces import list_interfaces
    from camserver.sim.camera import Faults, SimCamera
    from camserver.sim.frames import FRAMESIZE_BY_NAME, FRAMESIZES
    from camserver.sim.http import Login

    fs_text = str(args.framesize).upper()
    framesize = (
        int(fs_text)
        if fs_text.isascii() and fs_text.isdigit()
        else FRAMESIZE_BY_NAME[fs_text].number
    )
    if framesize not in FRAMESIZES:
        raise ValueError(f"unknown framesize {args.framesize}")
    if args.push and not args.key:
        raise ValueError("--push needs --key (the push key POST /api/streams answered)")
    announce_to = None
    if args.push:  # a pushing camera is not found by discovery: it finds the server
        args.discovery_port = args.discovery_listen_port = 0
    if args.discovery_listen_port:
        bcast = next((i.broadcast for i in list_interfaces() if i.address == args.host), None)
        if bcast is None:
            log.warning("no interface has address %s: not announcing", args.host)
        else:
            announce_to = (bcast, args.discovery_listen_port)
    login = None
    if args.login:
        user, _, password = args.login.partition(":")
        login = Login(user, password, args.login_scheme)
    cams = []
    async with contextlib.AsyncExitStack() as stack:
        for i in range(args.count):
            # Every fault switch that is also a flag (same name) starts as the flag says.
            faults = Faults(
                **{f.name: getattr(args, f.name) for f in fields(Faults) if hasattr(args, f.name)}
            )
            cam = SimCamera(
                f"{args.name_prefix}{i + 1}",
                args.host,
                args.http_port + 2 * i,
                fps=args.fps,
                framesize=framesize,
                quality=args.quality,
                replay=args.replay,
                faults=faults,
                discovery_port=args.discovery_port or None,
                announce_to=announce_to,
                announce_format=args.announce_format,
                login=login,
                embed_time=args.embed_time,
            )
            await stack.enter_async_context(cam)
            cams.append(cam)
            if args.push:
                cam.push_to(args.push, args.key or "", args.push_mode, args.every)
                print(f"{cam.name}: pushing to {args.push} ({args.push_mode})", flush=True)
            if args.esphome:
                device = await cam.serve_esphome(
                    args.esphome_port + i if args.esphome_port else 0,  # 0: any free port
                    key=args.encryption_key,
                    password=args.api_password,
                    mdns_interfaces=args.mdns_interface,
                )
                mode = "Noise" if args.encryption_key else "plaintext"
                print(f"{cam.name}: ESPHome API on {args.host}:{device.port} ({mode})", flush=True)
            print(
                f"{cam.name}: http://{cam.address}/  stream "
                f"http://{args.host}:{cam.stream_port}/stream",
                flush=True,
            )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):  # Windows
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    print("simulated cameras stopped", flush=True)


async def _discover(args: argparse.Namespace) -> int:
    from camserver.discovery.interfaces import select_interfaces
    from camserver.discovery.service import DiscoveryService

    settings = Settings()
    spec = ",".join(args.interface) if args.interface else settings.discovery_interfaces
    interfaces = select_interfaces(spec)
    if not interfaces:
        print(f"camserver discover: no interface to probe ({spec!r})", file=sys.stderr)
        return 2
    service = DiscoveryService(
        listen_port=0, camera_port=args.port or settings.discovery_port, interfaces=interfaces
    )
    await service.start()
    try:
        found = await service.scan(args.timeout)
    finally:
        await service.close()
    names = ", ".join(i.name for i in interfaces)
    if args.json:
        rows = [c.model_dump(mode="json") for c in found]
        print(json.dumps(rows, indent=2))
        return 0
    if found:
        print(f"{'NAME':<28} {'ADDRESS':<22} {'STREAM':<36} MODEL")
        for c in found:
            flag = f"  (claimed {c.claimed_ip})" if c.claimed_ip else ""
            print(
                f"{c.name:<28} {c.ip + ':' + str(c.port):<22} "
                f"{c.stream_config().stream_url:<36} {c.model or '-'}{flag}"
            )
    print(f"{len(found)} camera(s) answered on {names} within {args.timeout:g} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "config":
        return _config(args)
    if args.command == "discover":
        setup_logging("warning")
        try:
            return asyncio.run(_discover(args))
        except (OSError, ValueError) as exc:
            print(f"camserver discover: {exc}", file=sys.stderr)
            return 2
    if args.command == "watch":
        return watch.run(args)
    if args.command == "sim":
        setup_logging("info")
        try:
            asyncio.run(_run_sims(args))
        except (OSError, ValueError, KeyError) as exc:
            print(f"camserver sim: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            pass
        return 0
    return 2  # pragma: no cover - argparse requires a command


if __name__ == "__main__":
    sys.exit(main())
