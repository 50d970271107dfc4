"""Load test of the app over its real API: many ``gradio_client`` sessions at once.

    python benchmarks/load_test.py [--clients 32] [--per-client 5] [--max-seconds 900]
                                   [--concurrency 1] [--threads N] [--json out.json]
    python benchmarks/load_test.py --busy       # a tiny queue: the overflow must be told "busy"
    python benchmarks/load_test.py --url http://127.0.0.1:7860/   # an app already running

Loopback only: it starts its own ``python app.py`` on 127.0.0.1 (CPU, randomly initialised
AlexNet ReLU and k-WTA γ=0.1 stand-ins written to a temporary folder, so the figures
measure the serving, not the training), or talks to ``--url`` when that is a loopback
address. Bounded: ``clients × per-client`` requests at most, each with a timeout, all
within ``--max-seconds`` (requests not started by then count as failures).

Each client is one Gradio session and sends ``per-client`` attacks one after another,
cycling through FGSM, PGD, DeepFool, C&W and BPDA (``interactive`` presets), each request
with its own random-noise image, seed and ε. A response counts as correct only if it is
for its own request: the numbers echo the attack, seed and ε, both models answered, and
both adversarial PNGs lie within ε of the image this client sent (any other client's
image is far away). Prints p50/p95/max latency, failures, throughput and the server's
peak resident memory (VmHWM from /proc, when the script started the server).

``--busy`` starts a server with a queue of 2 and fires more requests at once than it can
hold: every request must either succeed or be refused at once with Gradio's "Queue is
full" message; none may hang.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent

ATTACKS = ("fgsm", "pgd", "deepfool", "cw", "bpda")
MODELS = ("alexnet-relu", "alexnet-kwta-0.1")
REQUEST_TIMEOUT_S = 300.0


@dataclass
class Outcome:
    client: int
    index: int
    attack: str
    seconds: float
    ok: bool
    error: str = ""


@dataclass
class Report:
    clients: int
    per_client: int
    requests: int
    correct: int
    failures: int
    wall_s: float
    p50_s: float | None
    p95_s: float | None
    max_s: float | None
    throughput_per_s: float
    server_peak_rss_mb: float | None
    server_rss_before_mb: float | None
    p50_by_attack_s: dict[str, float] = field(default_factory=dict)  # one client: service times
    errors: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- the server


def _check_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise SystemExit(f"--url must be a loopback address (127.0.0.1, ::1, localhost), got {host!r}")


def _status_kb(pid: int, key: str) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1])
    except OSError:
        return None
    return None


@dataclass
class Server:
    url: str
    pid: int | None  # None for a server this script did not start


@contextmanager
def start_server(folder: Path, *, concurrency: int, threads: int | None,
                 queue_size: int | None) -> Iterator[Server]:
    """``python app.py`` on a free loopback port over stand-in checkpoints; stopped on exit."""
    from kwta_demo.testing import (
        serve_app,
        write_image_folder,
        write_random_checkpoints,
    )

    write_random_checkpoints(folder / "ckpt", MODELS)
    write_image_folder(folder / "data", per_class=1)
    args = ["--device", "cpu", "--checkpoints", str(folder / "ckpt"), "--data", str(folder / "data"),
            "--concurrency", str(concurrency)]
    if threads:
        args += ["--threads", str(threads)]
    if queue_size:
        args += ["--queue-size", str(queue_size)]
    try:
        with serve_app(args, folder, env={"GRADIO_TEMP_DIR": str(folder / "gradio")}) as app:
            yield Server(app.url, app.process.pid)
    except RuntimeError as e:
        raise SystemExit(str(e)) from None


# ---------------------------------------------------------------- the clients


def _request_image(folder: Path, client: int, index: int) -> tuple[Path, np.ndarray]:
    """A 32x32 random-noise picture unique to (client, index), as a PNG file."""
    pixels = np.random.default_rng([client, index]).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    path = folder / f"c{client:03d}-r{index}.png"
    Image.fromarray(pixels).save(path)
    return path, pixels


def _eps_255(client: int, index: int) -> float:
    return 2.0 + ((client * 7 + index * 3) % 25) / 4  # 2..8, differs between neighbours


def _check(out: tuple, attack: str, seed: int, eps: float, pixels: np.ndarray) -> None:
    """Raise AssertionError unless ``out`` is the answer to exactly this request."""
    numbers = out[14]
    assert numbers["attack"] == attack, f"attack {numbers['attack']!r}, sent {attack!r}"
    assert numbers["seed"] == seed, f"seed {numbers['seed']}, sent {seed}"
    assert abs(numbers["eps_255"] - eps) < 1e-3, f"eps {numbers['eps_255']}, sent {eps}"
    models = [m["model"] for m in numbers["models"]]
    assert models == list(MODELS), f"models {models}"
    errors = [m["error"] for m in numbers["models"] if "error" in m]
    assert not errors, f"model errors: {errors}"
    for adv_path in (out[0], out[8]):  # the ReLU and the k-WTA γ=0.1 slot
        with Image.open(adv_path) as shown:
            adv = np.asarray(shown.convert("RGB")).astype(int)
        distance = int(np.abs(adv - pixels.astype(int)).max())
        # 8-bit rounding adds at most one level to the eps-ball
        assert distance <= int(np.ceil(eps)) + 1, f"adversarial {distance}/255 from the image sent (eps {eps})"


def _client_run(url: str, client: int, per_client: int, folder: Path, stop_at: float,
                outcomes: list[Outcome], lock: threading.Lock) -> None:
    from gradio_client import Client, handle_file

    try:
        session = Client(url, verbose=False, analytics_enabled=False,
                         download_files=str(folder / f"downloads-{client:03d}"))
    except Exception as e:  # any failure to connect is a failure to report
        with lock:
            outcomes += [Outcome(client, i, ATTACKS[(client + i) % len(ATTACKS)], 0.0, False,
                                 f"connect: {type(e).__name__}: {e}") for i in range(per_client)]
        return
    for index in range(per_client):
        attack = ATTACKS[(client + index) % len(ATTACKS)]
        if time.monotonic() > stop_at:
            with lock:
                outcomes.append(Outcome(client, index, attack, 0.0, False, "not started: time cap"))
            continue
        path, pixels = _request_image(folder, client, index)
        seed, eps = client * 1000 + index, _eps_255(client, index)
        start = time.monotonic()
        try:
            job = session.submit(image=handle_file(str(path)), true_class="unknown", arch="alexnet",
                                 variants=["relu", "kwta-0.1"], attack=attack, preset="interactive",
                                 eps_255=eps, steps=0, step_size_255=0, target_class="none",
                                 seed=seed, api_name="/attack")
            out = job.result(timeout=min(REQUEST_TIMEOUT_S, max(1.0, stop_at - start + 30)))
            _check(out, attack, seed, eps, pixels)
            outcome = Outcome(client, index, attack, time.monotonic() - start, True)
        except Exception as e:  # every kind of failure is counted and shown
            outcome = Outcome(client, index, attack, time.monotonic() - start, False,
                              f"{type(e).__name__}: {str(e)[:300]}")
        with lock:
            outcomes.append(outcome)


def _warm_up(url: str, folder: Path) -> None:
    """One attack of each kind, unmeasured: the models load, the first calls compile."""
    from gradio_client import Client, handle_file

    session = Client(url, verbose=False, analytics_enabled=False, download_files=str(folder / "warm-up"))
    path, pixels = _request_image(folder, 10_000, 0)
    for attack in ATTACKS:
        out = session.predict(image=handle_file(str(path)), true_class="unknown", arch="alexnet",
                              variants=["relu", "kwta-0.1"], attack=attack, preset="interactive",
                              eps_255=4, steps=0, step_size_255=0, target_class="none", seed=1,
                              api_name="/attack")
        _check(out, attack, 1, 4, pixels)


def run_load(url: str, clients: int, per_client: int, max_seconds: float, folder: Path,
             server_pid: int | None) -> tuple[Report, list[Outcome]]:
    """``clients`` sessions at once, ``per_client`` attacks each; the report and every outcome."""
    _warm_up(url, folder)
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    before = _status_kb(server_pid, "VmRSS") if server_pid else None
    start = time.monotonic()
    stop_at = start + max_seconds
    threads = [threading.Thread(target=_client_run, daemon=True,
                                args=(url, c, per_client, folder, stop_at, outcomes, lock))
               for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(0.0, stop_at + REQUEST_TIMEOUT_S - time.monotonic()))
    wall = time.monotonic() - start
    peak = _status_kb(server_pid, "VmHWM") if server_pid else None
    with lock:
        done = list(outcomes)
    missing = clients * per_client - len(done)
    lat = sorted(o.seconds for o in done if o.ok)
    q = statistics.quantiles(lat, n=20, method="inclusive") if len(lat) >= 2 else None
    failures = [o for o in done if not o.ok]
    report = Report(
        clients=clients, per_client=per_client, requests=clients * per_client,
        correct=len(lat), failures=len(failures) + missing, wall_s=round(wall, 2),
        p50_s=round(statistics.median(lat), 3) if lat else None,
        p95_s=round(q[18], 3) if q else None, max_s=round(lat[-1], 3) if lat else None,
        throughput_per_s=round(len(lat) / wall, 3) if wall else 0.0,
        server_peak_rss_mb=round(peak / 1024, 1) if peak else None,
        server_rss_before_mb=round(before / 1024, 1) if before else None,
        p50_by_attack_s={a: round(statistics.median(x), 3) for a in ATTACKS
                         if (x := [o.seconds for o in done if o.ok and o.attack == a])},
        errors=[f"client {o.client} request {o.index} ({o.attack}): {o.error}" for o in failures[:20]]
        + ([f"{missing} requests never answered (threads still waiting at the cap)"] if missing else []),
    )
    return report, done


def run_busy(url: str, requests: int, folder: Path) -> dict[str, Any]:
    """Fire ``requests`` attacks at once at a server with a tiny queue; classify the answers."""
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    barrier = threading.Barrier(requests)

    def one(client: int) -> None:
        from gradio_client import Client, handle_file

        session = Client(url, verbose=False, analytics_enabled=False,
                         download_files=str(folder / f"busy-{client:03d}"))
        path, pixels = _request_image(folder, 500 + client, 0)
        barrier.wait(timeout=120)
        start = time.monotonic()
        try:
            out = session.submit(image=handle_file(str(path)), true_class="unknown", arch="alexnet",
                                 variants=["relu", "kwta-0.1"], attack="pgd", preset="interactive",
                                 eps_255=4, steps=0, step_size_255=0, target_class="none", seed=client,
                                 api_name="/attack").result(timeout=REQUEST_TIMEOUT_S)
            _check(out, "pgd", client, 4, pixels)
            result = Outcome(client, 0, "pgd", time.monotonic() - start, True)
        except Exception as e:  # the refusal is an exception too; classified below
            result = Outcome(client, 0, "pgd", time.monotonic() - start, False,
                             f"{type(e).__name__}: {e}")
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=one, args=(c,), daemon=True) for c in range(requests)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=REQUEST_TIMEOUT_S + 130)
    busy = [o for o in outcomes if not o.ok and "Queue is full" in o.error]
    other = [o for o in outcomes if not o.ok and "Queue is full" not in o.error]
    return {
        "requests": requests, "answered": len(outcomes), "succeeded": sum(o.ok for o in outcomes),
        "refused_busy": len(busy), "other_failures": [o.error for o in other],
        "busy_message": busy[0].error if busy else None,
        "slowest_refusal_s": round(max((o.seconds for o in busy), default=0.0), 3),
        "slowest_success_s": round(max((o.seconds for o in outcomes if o.ok), default=0.0), 3),
    }


# ---------------------------------------------------------------- main


def _machine() -> dict[str, Any]:
    import torch

    cpu = platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "python": platform.python_version(), "date": datetime.date.today().isoformat()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running app on a loopback address (default: start one)")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--per-client", type=int, default=5)
    parser.add_argument("--max-seconds", type=float, default=900, help="wall-time cap for the run")
    parser.add_argument("--concurrency", type=int, default=1, help="server: attacks at once")
    parser.add_argument("--threads", type=int, default=None, help="server: torch CPU threads")
    parser.add_argument("--queue-size", type=int, default=None, help="server: queue size (default 64)")
    parser.add_argument("--busy", action="store_true", help="the queue-full check instead of the load run")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    if not (1 <= args.clients <= 256 and 1 <= args.per_client <= 50 and 0 < args.max_seconds <= 3600):
        parser.error("bounds: 1..256 clients, 1..50 requests each, at most 3600 s")
    if args.url:
        _check_loopback(args.url)

    folder = Path(tempfile.mkdtemp(prefix="kwta-load-"))
    load1 = os.getloadavg()[0]
    try:
        if args.url:
            server = Server(args.url, None)
            result = _run(args, server, folder)
        else:
            queue = 2 if args.busy and args.queue_size is None else args.queue_size
            with start_server(folder, concurrency=args.concurrency, threads=args.threads,
                              queue_size=queue) as server:
                result = _run(args, server, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    result.update(machine=_machine(), load_average_before=round(load1, 2),
                  load_average_after=round(os.getloadavg()[0], 2),
                  server={"url": args.url or "started here", "concurrency": args.concurrency,
                          "threads": args.threads, "queue_size": args.queue_size},
                  models=list(MODELS) + ["randomly initialised stand-ins, 4.6M parameters each"])
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if args.busy:
        ok = (result["busy"]["answered"] == result["busy"]["requests"]
              and not result["busy"]["other_failures"] and result["busy"]["refused_busy"] > 0)
    else:
        ok = result["load"]["failures"] == 0
    return 0 if ok else 1


def _run(args: argparse.Namespace, server: Server, folder: Path) -> dict[str, Any]:
    if args.busy:
        return {"busy": run_busy(server.url, max(8, args.clients // 4), folder)}
    report, _ = run_load(server.url, args.clients, args.per_client, args.max_seconds, folder, server.pid)
    return {"load": asdict(report)}


if __name__ == "__main__":
    sys.exit(main())
