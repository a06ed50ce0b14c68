"""The cluster at scale, on this machine: 5 camserver nodes, a real redis-server and 300
simulated cameras (VGA, 2 fps, ``--replay``), one MJPEG viewer per camera on a node that
does not pull it (so every frame crosses Redis), viewers on every node.

Windows, one after the other: (A) no viewers: the nodes only pull (ingest cost per frame,
lease and status traffic per camera); (B) the viewers: what relaying adds per relayed
frame, Redis' CPU per frame published and per copy delivered, the rate every camera reaches
its viewer, memory per node and Redis'; (C) ``kill -9`` of the node holding the most
cameras: per camera it held, the time until its viewer has frames again. Then the
extrapolation: what one Redis core carries at 15 fps VGA.

    .venv/bin/python bench/scale.py [--nodes 5] [--cameras 300] [--smoke] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cluster import node, redis_server
from bench.harness import PY, Meter, cameras, table
from bench.viewers import open_mjpeg
from camserver.codecs.mjpeg import NEED_DATA, Frame

CAMS_PER_SIM = 100
"""Cameras per simulator process (the 2 cores share them better in several)."""


# -- the viewer process ----------------------------------------------------------------------


async def _watch(url: str, until: float, times: list[float], sizes: list[int]) -> None:
    """One MJPEG viewer: the arrival time of every frame until ``until`` (wall clock)."""
    try:
        reader, writer, parser = await open_mjpeg(url)
        while time.time() < until:
            chunk = await asyncio.wait_for(reader.read(65536), max(0.1, until - time.time()))
            if not chunk:
                return
            parser.receive_data(chunk)
            while (e := parser.next_event()) is not NEED_DATA:
                if isinstance(e, Frame):
                    times.append(time.time())
                    if len(sizes) < 50:
                        sizes.append(len(e.data))
        writer.close()
    except (TimeoutError, OSError, asyncio.IncompleteReadError):
        return


async def _viewers(plan: dict[str, str], seconds: float) -> dict[str, Any]:
    until = time.time() + seconds
    times: dict[str, list[float]] = {name: [] for name in plan}
    sizes: list[int] = []
    await asyncio.gather(*(_watch(url, until, times[n], sizes) for n, url in plan.items()))
    return {"times": times, "frame_bytes": statistics.mean(sizes or [0])}


# -- the bench --------------------------------------------------------------------------------


def _metric(text: str, name: str, label: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and label in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def _published(urls: list[str], c: httpx.Client) -> float:
    return sum(
        _metric(
            c.get(u + "/metrics").text,
            "camserver_cluster_relay_frames_total",
            'outcome="published"',
        )
        for u in urls
    )


def _frames(url: str, c: httpx.Client) -> dict[str, int]:
    return {s["name"]: s["status"]["frames"] for s in c.get(url + "/api/streams").json()}


def _holders(url: str, c: httpx.Client) -> dict[str, str | None]:
    return {s["name"]: s["status"].get("node") for s in c.get(url + "/api/streams").json()}


def _wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise RuntimeError(f"timed out waiting for {what}")


def _cpu(procs: dict[str, psutil.Process]) -> dict[str, float]:
    out = {}
    for k, p in procs.items():
        try:
            t = p.cpu_times()
            out[k] = t.user + t.system
        except psutil.NoSuchProcess:
            out[k] = 0.0
    return out


def run(
    n_nodes: int, n_cams: int, fps: float, window: float, takeover_wait: float
) -> dict[str, Any]:
    out: dict[str, Any] = {"nodes": n_nodes, "cameras": n_cams, "fps": fps}
    with ExitStack() as stack:
        redis_url, redis_proc = stack.enter_context(redis_server())
        ports: list[int] = []
        for first in range(0, n_cams, CAMS_PER_SIM):
            count = min(CAMS_PER_SIM, n_cams - first)
            ports += stack.enter_context(cameras(count, fps=fps, framesize="VGA"))
        env = {"CAMSERVER_MAX_STREAMS": str(n_cams + 10)}
        nodes = {
            f"n{i}": stack.enter_context(node(redis_url, f"n{i}", **env))
            for i in range(1, n_nodes + 1)
        }
        urls = {k: u for k, (u, _) in nodes.items()}
        procs = {k: p for k, (_, p) in nodes.items()}
        first_url = urls["n1"]
        c = stack.enter_context(httpx.Client(trust_env=False, timeout=30))
        _wait(
            lambda: len(c.get(first_url + "/api/cluster").json()["nodes"]) == n_nodes,
            30,
            "every node in the cluster",
        )
        names = [f"cam{i:03d}" for i in range(n_cams)]

        def add(i: int) -> None:
            body = {"name": names[i], "host": f"127.0.0.1:{ports[i]}"}
            c.post(first_url + "/api/streams", json=body).raise_for_status()

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(add, range(n_cams)))

        def all_streaming() -> bool:
            streams = c.get(first_url + "/api/streams").json()
            return len(streams) == n_cams and all(
                s["status"]["state"] == "streaming" and s["status"].get("node") for s in streams
            )

        try:
            _wait(all_streaming, 120, "every camera streaming")
        except RuntimeError:
            late = [
                (
                    s["name"],
                    s["status"]["state"],
                    s["status"].get("node"),
                    s["status"].get("last_error"),
                )
                for s in c.get(first_url + "/api/streams").json()
                if s["status"]["state"] != "streaming" or not s["status"].get("node")
            ]
            raise RuntimeError(
                f"not streaming after 120 s: {late[:10]} ({len(late)} in all)"
            ) from None
        time.sleep(3)  # the spread settles
        holders = _holders(first_url, c)
        held = {k: sum(1 for h in holders.values() if h == k) for k in nodes}
        out["cameras_per_node"] = held
        admin = redis.Redis.from_url(redis_url)
        stack.callback(admin.close)
        everyone = {**procs, "redis": redis_proc}

        # (A) no viewers: ingest only.
        f0, cpu0, ops0, by0 = _frames(first_url, c), _cpu(everyone), _ops(admin), _calls(admin)
        t0 = time.monotonic()
        time.sleep(window)
        f1, cpu1, ops1, by1 = _frames(first_url, c), _cpu(everyone), _ops(admin), _calls(admin)
        wall_a = time.monotonic() - t0
        ingested = sum(f1[n] - f0.get(n, 0) for n in names)
        nodes_cpu_a = sum(cpu1[k] - cpu0[k] for k in procs)
        out["ingest_fps_total"] = round(ingested / wall_a, 1)
        out["ingest_us_per_frame"] = round(nodes_cpu_a / ingested * 1e6, 1)
        out["ingest_cpu_pct_per_camera"] = round(100 * nodes_cpu_a / wall_a / n_cams, 3)
        out["redis_cpu_pct_idle"] = round(100 * (cpu1["redis"] - cpu0["redis"]) / wall_a, 2)
        # No viewer anywhere: every Redis command is lease, status, demand or heartbeat
        # traffic (a holder whose frames reach nobody only probes twice a second).
        out["redis_cmds_per_camera_s"] = round((ops1 - ops0) / wall_a / n_cams, 2)
        per = {k: (by1[k] - by0.get(k, 0)) / wall_a / n_cams for k in by1}
        top = sorted(per.items(), key=lambda kv: -kv[1])[:6]
        out["redis_cmds_by_kind"] = {k: round(v, 2) for k, v in top if v >= 0.05}

        # (B) a viewer per camera on the next node after its holder; then (C) kill -9.
        order = list(nodes)
        plan = {
            n: f"{urls[order[(order.index(h) + 1) % n_nodes]]}/api/streams/{n}/mjpeg"
            for n, h in holders.items()
            if h is not None
        }
        victim = max(held, key=lambda k: held[k])
        settle = 6.0
        total = settle + window + takeover_wait + 2
        with tempfile.TemporaryDirectory() as tmp:
            plan_file, result_file = Path(tmp) / "plan.json", Path(tmp) / "out.json"
            plan_file.write_text(json.dumps(plan))
            viewer = subprocess.Popen(
                [PY, __file__, "--viewers", str(plan_file), str(total), str(result_file)]
            )
            viewer_proc = psutil.Process(viewer.pid)
            time.sleep(settle)
            w_start = time.time()
            p0, cpu0, meters = (
                _published(list(urls.values()), c),
                _cpu(everyone),
                Meter(viewer_proc),
            )
            meters.start()
            time.sleep(window)
            meters.stop()
            p1, cpu1 = _published(list(urls.values()), c), _cpu(everyone)
            w_end = time.time()
            rss = {k: round(p.memory_info().rss / 2**20, 1) for k, p in procs.items()}
            redis_rss = round(redis_proc.memory_info().rss / 2**20, 1)
            # (C) kill -9 of the node holding the most cameras.
            killed_at = time.time()
            procs[victim].kill()
            viewer.wait(total + 60)
            got = json.loads(result_file.read_text())
        times: dict[str, list[float]] = got["times"]
        wall_b = w_end - w_start
        per_cam = {
            n: sum(1 for t in ts if w_start <= t < w_end) / wall_b for n, ts in times.items()
        }
        delivered = sum(per_cam.values()) * wall_b
        published = p1 - p0
        nodes_cpu_b = sum(cpu1[k] - cpu0[k] for k in procs)
        # Redis' CPU for the frames: window B's less its lease traffic (window A's rate).
        redis_cpu_b = cpu1["redis"] - cpu0["redis"]
        redis_frames_cpu = max(0.0, redis_cpu_b - out["redis_cpu_pct_idle"] / 100 * wall_b)
        relay_cpu = nodes_cpu_b - nodes_cpu_a * wall_b / wall_a
        out["viewers"] = len(plan)
        out["viewer_fps_min"] = round(min(per_cam.values()), 2)
        out["viewer_fps_median"] = round(statistics.median(per_cam.values()), 2)
        out["cameras_below_1_9_fps"] = sum(1 for v in per_cam.values() if v < 1.9)
        out["frame_bytes"] = round(got["frame_bytes"])
        out["published_fps"] = round(published / wall_b, 1)
        out["relay_us_per_frame"] = round(relay_cpu / max(delivered, 1) * 1e6, 1)
        out["nodes_cpu_pct"] = round(100 * nodes_cpu_b / wall_b, 1)
        out["redis_cpu_pct"] = round(100 * redis_cpu_b / wall_b, 2)
        out["redis_us_per_published"] = round(redis_frames_cpu / max(published, 1) * 1e6, 1)
        out["redis_us_per_copy"] = round(redis_frames_cpu / max(published + delivered, 1) * 1e6, 1)
        out["node_rss_mb"] = rss
        out["redis_rss_mb"] = redis_rss
        out["redis_used_mb"] = round(int(admin.info("memory")["used_memory"]) / 2**20, 1)
        # Takeover: the victim's cameras watched from a surviving node.
        mine = [n for n, h in holders.items() if h == victim and victim not in plan[n]]
        gaps = []
        for n in mine:
            after = [t for t in times[n] if t > killed_at]
            gaps.append(after[0] - killed_at if after else math.inf)
        back = [g for g in gaps if math.isfinite(g)]
        out["takeover"] = {
            "node": victim,
            "cameras": held[victim],
            "watched": len(mine),
            "recovered": len(back),
            "median_s": round(statistics.median(back), 2) if back else None,
            "max_s": round(max(back), 2) if back else None,
        }
    out["extrapolation"] = extrapolate(out)
    return out


def _ops(r: redis.Redis) -> int:
    return int(r.info("stats")["total_commands_processed"])


def _calls(r: redis.Redis) -> dict[str, int]:
    """Calls per command (scripts' inner commands included, as Redis counts them)."""
    stats = r.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


def extrapolate(res: dict[str, Any]) -> dict[str, Any]:
    """What one Redis core carries at 15 fps VGA, from this run's per-frame costs: each
    camera is published once and delivered to ``k`` nodes; Redis spends its per-copy cost
    on each copy in and out, plus the lease traffic measured with no viewers."""
    copy_us = res["redis_us_per_copy"]
    idle_per_cam = res["redis_cpu_pct_idle"] / 100 / res["cameras"]  # core-seconds per s
    rows = {}
    for k in (1, 2, 4):
        per_cam = 15 * (1 + k) * copy_us / 1e6 + idle_per_cam  # core-seconds per second
        rows[f"{k}_node{'s' if k > 1 else ''}_per_camera"] = int(0.7 / per_cam)
    # Each copy crosses Redis' link once (in, or out to a node): a 1 Gbit/s link moves
    # about 117 MB/s of payload.
    link = {
        f"{k}_node{'s' if k > 1 else ''}_per_camera": int(
            117e6 / ((1 + k) * 15 * res["frame_bytes"])
        )
        for k in (1, 2, 4)
    }
    return {
        "budget": "70 % of one Redis core",
        "cameras_at_15fps_vga": rows,
        "cameras_per_1_gbit_link": link,
        "MB_s_per_copy": round(15 * res["frame_bytes"] / 1e6, 2),
    }


def table_of(res: dict[str, Any]) -> str:
    t = res["takeover"]
    rows = [
        {
            "what": "cameras / nodes / fps",
            "value": f"{res['cameras']} / {res['nodes']} / {res['fps']:g}",
        },
        {
            "what": "cameras per node",
            "value": ", ".join(f"{k} {v}" for k, v in res["cameras_per_node"].items()),
        },
        {
            "what": "ingest (no viewers): % of a core per camera, CPU µs per frame",
            "value": f"{res['ingest_cpu_pct_per_camera']} %, {res['ingest_us_per_frame']} µs",
        },
        {
            "what": "relay, CPU µs per relayed frame (publish + receive + serve)",
            "value": res["relay_us_per_frame"],
        },
        {"what": "viewers (one per camera, never on its holder)", "value": res["viewers"]},
        {
            "what": "viewer fps: min / median (cameras < 1.9 fps)",
            "value": f"{res['viewer_fps_min']} / {res['viewer_fps_median']} "
            f"({res['cameras_below_1_9_fps']})",
        },
        {"what": "all nodes' CPU with viewers, % of one core", "value": res["nodes_cpu_pct"]},
        {
            "what": "Redis CPU %: idle (leases) / with viewers",
            "value": f"{res['redis_cpu_pct_idle']} / {res['redis_cpu_pct']}",
        },
        {
            "what": "Redis µs per frame published / per copy in or out (less lease traffic)",
            "value": f"{res['redis_us_per_published']} / {res['redis_us_per_copy']}",
        },
        {
            "what": "Redis commands per camera per s, no viewers (the most called)",
            "value": f"{res['redis_cmds_per_camera_s']} ("
            + ", ".join(f"{k} {v}" for k, v in res["redis_cmds_by_kind"].items())
            + ")",
        },
        {
            "what": "RSS per node, MB",
            "value": ", ".join(f"{k} {v}" for k, v in res["node_rss_mb"].items()),
        },
        {
            "what": "Redis RSS / used memory, MB",
            "value": f"{res['redis_rss_mb']} / {res['redis_used_mb']}",
        },
        {
            "what": f"kill -9 of {t['node']} ({t['cameras']} cameras): frames again, "
            "median / max s",
            "value": f"{t['median_s']} / {t['max_s']} ({t['recovered']} of {t['watched']} watched)",
        },
    ]
    e = res["extrapolation"]
    for k, v in e["cameras_at_15fps_vga"].items():
        link = e["cameras_per_1_gbit_link"][k]
        rows.append(
            {
                "what": f"15 fps VGA, {k.replace('_', ' ')}: cameras per Redis core (70 %) / "
                "per 1 Gbit/s link",
                "value": f"{v} / {link}",
            }
        )
    return table(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=5)
    ap.add_argument("--cameras", type=int, default=300)
    ap.add_argument("--fps", type=float, default=2.0)
    ap.add_argument("--window", type=float, default=20.0)
    ap.add_argument("--smoke", action="store_true", help="2 nodes, 10 cameras, short windows")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--viewers", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.viewers:  # the viewer process
        plan, seconds, out = args.viewers
        got = asyncio.run(_viewers(json.loads(Path(plan).read_text()), float(seconds)))
        Path(out).write_text(json.dumps(got))
        return
    res = bench(args.smoke, args.nodes, args.cameras, args.fps, args.window)
    print(json.dumps(res, indent=2) if args.json else table_of(res))


def bench(
    smoke: bool = False, nodes: int = 5, cams: int = 300, fps: float = 2.0, window: float = 20.0
) -> dict[str, Any]:
    if smoke:
        return run(2, 10, fps, 4.0, 8.0)
    return run(nodes, cams, fps, window, 15.0)


if __name__ == "__main__":
    main()
