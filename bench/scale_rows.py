"""The rows of issue 13's table that ``bench/postfix_scan.py`` adds around its scans.

Each is measured in a process of its own, on the benchmark's queue, in the same run as
``postqueue -j`` and batched ``postcat -h`` (the ratios' denominators):

* :func:`qshape`: ``qshape -c ETC deferred`` (Postfix's own queue-shape tool: it reads every
  queue file of the queue directly), wall and CPU time;
* :func:`exporter_scrape`: ``prometheus-postfix-exporter`` started on a loopback port against
  the private instance's ``showq`` socket and mail log; one ``GET /metrics`` is timed (it asks
  showq for the whole queue and parses it), skipped with a note if the exporter cannot run;
* :func:`api_messages`: ``mailwatch run`` with the API on a loopback port, on a copy of the
  store in which every queued message is stuck; ``GET /api/v1/messages?stuck=true``: the first
  page, pages followed by ``next_cursor``, and a deep ``offset`` page for comparison;
* :func:`run_rss_series`: ``mailwatch run`` watching the queue: its ``VmRSS`` after each of
  10 stored scans and its ``VmHWM`` (``/proc/PID/status``).

* :func:`imap_sync`: with ``--imap DIR``, ``bench/imap_sync.py`` on the kept mailboxes in DIR
  (N messages, S = N/10), in a process of its own: the first sync against stdlib imaplib
  fetching the same items, and the poll rows, with their targets.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MAILWATCH = [sys.executable, "-m", "mailwatch"]
EXPORTER = "prometheus-postfix-exporter"
TOKEN_ENV = "MW_BENCH_API_TOKEN"  # noqa: S105 - the variable's name, not a secret
TOKEN = secrets.token_hex(16)
SETTLE = 5.0
"""Seconds between the API answering and the first timed request."""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], runs: int) -> dict[str, float]:
    """Median wall and CPU seconds (the command and its children) of ``argv``, output dropped."""
    walls, cpus = [], []
    for _ in range(runs):
        cpu0, t0 = _children_cpu(), time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        walls.append(time.perf_counter() - t0)
        cpus.append(_children_cpu() - cpu0)
    return {"seconds": statistics.median(walls), "cpu_seconds": statistics.median(cpus)}


def qshape(config_dir: Path, runs: int) -> dict[str, Any]:
    """``qshape -c ETC deferred``: Postfix's own tool, reading every deferred queue file."""
    tool = shutil.which("qshape")
    if tool is None:
        return {"skipped": "qshape not installed (Debian: postfix's qshape)"}
    return timed([tool, "-c", str(config_dir), "deferred"], runs)


def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str, token: str | None = None, timeout: float = 300) -> bytes:
    request = urllib.request.Request(url)  # noqa: S310 - a loopback URL built here
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        return bytes(response.read())


def _wait_http(url: str, child: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"{child.args!r} exited {child.returncode}")
        with contextlib.suppress(OSError):
            _get(url, timeout=5)
            return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout:.0f}s")


@contextlib.contextmanager
def _process(
    argv: list[str], env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen(  # fixed command lines of this benchmark
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=None if env is None else os.environ | env,
    )  # fmt: skip
    try:
        yield child
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def exporter_scrape(queue_dir: Path, log_file: Path, runs: int) -> dict[str, Any]:
    """``GET /metrics`` of prometheus-postfix-exporter on the private instance (median)."""
    tool = shutil.which(EXPORTER)
    if tool is None:
        return {"skipped": f"{EXPORTER} not installed (Debian: prometheus-postfix-exporter)"}
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    argv = [tool, f"--web.listen-address=127.0.0.1:{port}",
            f"--postfix.showq_path={queue_dir / 'public' / 'showq'}",
            f"--postfix.logfile_path={log_file}"]  # fmt: skip
    try:
        with _process(argv) as child:
            _wait_http(f"http://127.0.0.1:{port}/", child, 30)
            samples, body = [], b""
            for _ in range(runs):
                t0 = time.perf_counter()
                body = _get(url)
                samples.append(time.perf_counter() - t0)
    except (OSError, RuntimeError) as exc:
        return {"skipped": f"{EXPORTER} could not run: {exc}"}
    counted = [line for line in body.decode().splitlines()
               if line.startswith("postfix_showq_message_age_seconds_count")]  # fmt: skip
    if not counted:
        return {"skipped": f"{EXPORTER} answered without showq metrics (showq unreachable?)"}
    queued = sum(float(line.rsplit(" ", 1)[1]) for line in counted)
    return {"seconds": statistics.median(samples), "queued_seen": queued,
            "note": "wall time of a scrape (the exporter's CPU is its own process's)"}  # fmt: skip


def _read_store(workdir: Path, scanned: Path) -> tuple[Path, int]:
    """A copy of a scanned store with every queued message past its deadline, and how many."""
    copy = workdir / "api-read.sqlite"
    with sqlite3.connect(scanned) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copyfile(scanned, copy)
    with sqlite3.connect(copy) as db:
        db.execute("UPDATE messages SET deadline = 0 WHERE status = 'queued'")
        stuck = int(
            db.execute("SELECT count(*) FROM messages WHERE status = 'queued'").fetchone()[0]
        )
    return copy, stuck


def api_messages(workdir: Path, scanned: Path, runs: int, pages: int = 10) -> dict[str, Any]:
    """``GET /api/v1/messages?stuck=true`` served by ``mailwatch run`` on the all-stuck copy.

    The run watches one source that cannot be reached (``run`` needs a source; this one never
    touches the copied messages), so the API answers on a still store.
    """
    store, stuck = _read_store(workdir, scanned)
    port = free_port()
    config = workdir / "api.toml"
    config.write_text(
        f'[store]\npath = "{store}"\n[http]\nlisten = "127.0.0.1:{port}"\n'
        f'[[http.tokens]]\nname = "bench"\nscope = "read"\nsecret = {{ env = "{TOKEN_ENV}" }}\n'
        f'[sources.idle]\ntype = "postfix"\nconfig_dir = "{workdir / "no-postfix"}"\n'
        'interval = "1h"\n',
        encoding="utf-8",
    )
    base = f"http://127.0.0.1:{port}/api/v1/messages?stuck=true"
    with _process([*MAILWATCH, "-c", str(config), "run"], {TOKEN_ENV: TOKEN}) as child:
        _wait_http(f"http://127.0.0.1:{port}/healthz", child, 300)
        time.sleep(SETTLE)  # let the service finish starting (its snapshot of the store)
        _get(base, TOKEN)  # untimed: opens the reader's connection
        first, total, cursor = [], 0, None
        for _ in range(runs):
            t0 = time.perf_counter()
            body = json.loads(_get(base, TOKEN))
            first.append(time.perf_counter() - t0)
            total, cursor = body["total"], body["next_cursor"]
        paged = []
        for _ in range(pages):
            if cursor is None:
                break
            t0 = time.perf_counter()
            body = json.loads(_get(f"{base}&limit=1000&cursor={cursor}", TOKEN))
            paged.append(time.perf_counter() - t0)
            cursor = body["next_cursor"]
        deep = max(total - 1000, 0)
        t0 = time.perf_counter()
        _get(f"{base}&limit=1000&offset={deep}", TOKEN)
        offset_seconds = time.perf_counter() - t0
    if total != stuck:
        raise RuntimeError(f"API total {total} != {stuck} stuck in the store")
    return {"stuck": stuck, "first_page_seconds": statistics.median(first),
            "cursor_page_1000_seconds": statistics.median(paged) if paged else None,
            "cursor_pages": len(paged), "offset_page_1000_seconds": offset_seconds,
            "offset": deep}  # fmt: skip


def _status(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def run_rss_series(workdir: Path, config_dir: Path, scans: int = 10) -> dict[str, Any]:
    """``mailwatch run`` watching the queue: ``VmRSS`` after each of ``scans`` stored scans."""
    config = workdir / "run10.toml"
    store = workdir / "run10.sqlite"
    for stale in workdir.glob("run10.sqlite*"):
        stale.unlink()
    config.write_text(
        f'[store]\npath = "{store}"\n[http]\nlisten = "127.0.0.1:{free_port()}"\n'
        f'[sources.bench]\ntype = "postfix"\nconfig_dir = "{config_dir}"\ninterval = "1s"\n'
        'timeout = "10m"\n',
        encoding="utf-8",
    )
    t0 = time.perf_counter()
    series: list[float] = []
    with _process([*MAILWATCH, "-c", str(config), "run"]) as child:
        while len(series) < scans:
            if child.poll() is not None:
                raise RuntimeError(f"mailwatch run exited {child.returncode}")
            time.sleep(0.2)
            done = 0
            with (
                contextlib.suppress(sqlite3.Error),
                contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db,
            ):
                done = int(db.execute("SELECT count(*) FROM scans WHERE ok").fetchone()[0])
            while len(series) < min(done, scans):
                series.append(_status(child.pid)["VmRSS"])
        final = _status(child.pid)
    return {"scans": scans, "rss_mib": [round(x, 1) for x in series], "VmRSS": final["VmRSS"],
            "VmHWM": final["VmHWM"], "seconds": time.perf_counter() - t0}  # fmt: skip


def machine() -> dict[str, Any]:
    """What the figures depend on: CPU model and count, memory, kernel, load average."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    memory = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        memory = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
    return {"cpu_model": model, "memory_gib": round(memory, 1), "kernel": os.uname().release,
            "loadavg": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip


IMAP_SYNC = Path(__file__).with_name("imap_sync.py")


def imap_sync(messages: int, keep: str, runs: int) -> dict[str, Any]:
    """``bench/imap_sync.py`` on the mailboxes kept in ``keep``, in this run: its figures.

    Returns the first sync and stdlib's medians, their ratio and every IMAP target, or
    ``skipped`` with the reason when it could not run.
    """
    with tempfile.TemporaryDirectory(prefix="mailwatch-bench-imap-") as tmp:
        out = Path(tmp) / "imap.json"
        argv = [sys.executable, str(IMAP_SYNC), "--messages", str(messages),
                "--small", str(max(messages // 10, 1)), "--runs", str(runs), "--keep", keep,
                "--json", str(out)]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=7200)
        if not out.exists():
            return {"skipped": f"imap_sync.py exited {done.returncode}: {done.stderr[-500:]}"}
        document = json.loads(out.read_text())
    medians = document["medians_seconds"]
    return {
        "unread": document["unread"],
        "first_sync_seconds": medians["first_sync"],
        "first_sync_cpu_seconds": medians.get("first_sync_cpu"),
        "stdlib_seconds": medians["stdlib"],
        "ratio": medians["first_sync"] / medians["stdlib"],
        "cpu_floor_seconds": document.get("cpu_floor_seconds"),
        "server_cpu_seconds": medians.get("first_sync_server_cpu"),
        "targets": document["targets"],
        "loadavg_at_start": document["environment"].get("loadavg_at_start"),
    }
