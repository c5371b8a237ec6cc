#!/usr/bin/env python3
"""Generate examples/data/motivating.prom: 15 minutes of scrapes of the motivating example.

What it is
----------
The four Python targets of shared/docs/motivating-example.md (ports 8001..8004: a Counter, a Gauge, a
Histogram and a Summary, each with its `module` label), each scraped every 15 s for 15 minutes as the
`prometheus_demo` job of that doc would scrape them, written as one text file that `tsdbctl ingest`
loads directly. Every scrape is the exact body that `prometheus_client` serves in the text format 0.0.4
(`generate_latest`): HELP/TYPE lines, counters printed with a decimal point, `_created` gauges, float
`le` bounds, a summary without quantiles, and the client's default collectors (`python_gc_*`,
`python_info`, `process_*`). What is added to each body is listed below.

Changes made to each scraped body
---------------------------------
* Every sample line gets a timestamp in milliseconds: the time of that scrape. The file is
  time-major: the four targets scraped at t0 (ports in order), then at t0+15 s, and so on. A scrape of
  tick i happens at t0 + 15 s * i + jitter, the jitter being 1..20 ms drawn from the seeded generator
  for each (target, tick), so timestamps are not perfectly regular, as in a real scrape loop.
* Prometheus attaches the target labels `job` and `instance` when it scrapes; the targets do not
  expose them. Since this file is stored as is, every sample line carries
  `job="prometheus_demo"` and `instance="localhost:800N"`, merged into the label set in name order
  (as Prometheus' /federate would print them), so that e.g. `rate(function_calls_total[1m])` returns
  the series the doc's users see. No target exposes a `job` or `instance` label of its own, so no
  conflict arises (the `honor_labels` question does not come up).
* Content type: this is the text format 0.0.4 body, the client's answer to a plain GET (curl, a
  browser) and the format the doc describes. A Prometheus 2.x server offers OpenMetrics first in its
  Accept header and this client would honour that; the 0.0.4 body is chosen here as the doc's form.
* Comment lines: a header at the top of the file and one `# scrape ...` line before each body.
  Text format 0.0.4 ignores comments other than HELP and TYPE.
HELP and TYPE lines repeat for each scrape, as the bodies are concatenated: Prometheus' scrape parser
reads each line on its own, but a strict whole-document checker (promtool check metrics) rejects a
second TYPE for the same name, so check one body at a time.

Determinism (same seed, same prometheus-client version: same bytes)
-------------------------------------------------------------------
Nothing reads the wall clock or the real process:
* Simulated clock. `prometheus_client.metrics` reads `time.time()` through its module-level `time`
  import (for `_created`); that attribute is replaced with a namespace whose `time()` returns the
  simulated clock. Timers (`.time()` of Gauge, Histogram and Summary) read
  `prometheus_client.context_managers.default_timer`, which is replaced with a simulated monotonic
  clock (seconds since the simulated boot, like CLOCK_MONOTONIC). Only those two module attributes are
  patched; the global `time` module is untouched.
* Simulated programs. Each target is a generator running the handler loop of the doc (a random sleep
  of 0.05..0.5 s per call); "sleeping" yields to a discrete-event scheduler that advances the clock.
  Each target starts a few seconds before t0, so the first scrape already holds a few calls.
* Default collectors, one set per registry, fed with synthetic inputs:
  - ProcessCollector reads a fake procfs (`proc=` argument) written to a temporary directory before
    each scrape: /proc/stat (btime), /proc/<pid>/stat (CPU ticks, vsize, rss, start time),
    /proc/<pid>/limits and /proc/<pid>/fd/. Its clock-tick rate and page size are pinned to Linux'
    100 Hz and 4096 B (they come from the host otherwise). CPU time and RSS grow with the calls and
    scrapes served, from a fixed cost model.
  - GCCollector reads `gc.get_stats()` through its module-level `gc` import; that attribute is
    replaced with a shim returning per-target counts driven by a simple allocation model (a gen-0
    collection every 700 allocations, every 11th escalating to gen 1, and so on).
  - PlatformCollector is given a fixed platform object (CPython 3.11.7).
* `_created` series are enabled explicitly (an environment variable could otherwise disable them).
* All randomness comes from `random.Random` instances seeded from --seed and the port.

Regenerate
----------
    pip install prometheus-client==0.26.0
    python3 examples/gen_motivating.py                 # writes examples/data/motivating.prom
    python3 examples/gen_motivating.py --out /tmp/x.prom --seed 1 --minutes 15
    sha256sum examples/data/motivating.prom               # same bytes on every run
The run prints the figures of the file (scrapes, time range, final counter, first scrape with the
counter above 100, the alert threshold of the doc) on stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import heapq
import os
import random
import re
import sys
import tempfile
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata

import prometheus_client.context_managers as pc_context_managers
import prometheus_client.gc_collector as pc_gc_collector
import prometheus_client.metrics as pc_metrics
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    Summary,
    generate_latest,
)

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000

# The scrape configuration of the doc.
JOB = "prometheus_demo"
SCRAPE_INTERVAL_NS = 15 * NS_PER_S
JITTER_MS = (1, 20)

# The handler of the doc: a random short sleep per call.
SLEEP_S = (0.05, 0.5)

# Default start: 2026-11-20T10:00:00Z.
DEFAULT_START = "2026-11-20T10:00:00Z"
DEFAULT_SEED = 20261120
DEFAULT_MINUTES = 15

# Synthetic host and process facts (Linux x86_64).
CLOCK_TICKS = 100.0
PAGE_SIZE = 4096
BOOT_BEFORE_START_NS = 2 * 3600 * NS_PER_S + 47 * 60 * NS_PER_S + 29 * NS_PER_S
PYTHON_VERSION = ("3", "11", "7")
MAX_FDS = 1024
# fds: stdin/stdout/stderr, the listening socket, the epoll fd of the server, the scrape connection.
OPEN_FDS = 6

# Cost model of one program, in CPU nanoseconds and allocated objects.
CPU_STARTUP_NS = 90 * NS_PER_MS
CPU_PER_CALL_NS = 60_000
CPU_PER_SCRAPE_NS = 1_400_000
USER_SHARE = 0.8
ALLOC_STARTUP = 30_000
ALLOC_PER_CALL = 45
ALLOC_PER_SCRAPE = 2_300
GC_THRESHOLD0 = 700
GC_ESCALATE = 11  # every 11th collection of a generation is done one generation up
VSIZE_BYTES = 29_327_360
RSS_BASE_PAGES = 5_620
RSS_PAGES_PER_SCRAPE_MAX = 3  # growth of the first scrapes (buffers), capped below
RSS_GROWTH_CAP_PAGES = 240


class SimClock:
    """The one simulated clock all targets share, in integer nanoseconds since the Unix epoch."""

    def __init__(self, start_ns: int, boot_ns: int) -> None:
        self.now_ns = start_ns
        self.boot_ns = boot_ns

    def time(self) -> float:
        return self.now_ns / NS_PER_S

    def monotonic(self) -> float:
        return (self.now_ns - self.boot_ns) / NS_PER_S


class FixedPlatform:
    """What PlatformCollector asks of the `platform` module, frozen."""

    @staticmethod
    def python_version_tuple() -> tuple[str, str, str]:
        return PYTHON_VERSION

    @staticmethod
    def python_version() -> str:
        return ".".join(PYTHON_VERSION)

    @staticmethod
    def python_implementation() -> str:
        return "CPython"

    @staticmethod
    def system() -> str:
        return "Linux"


@dataclass
class GcState:
    """Synthetic `gc.get_stats()` of one program."""

    rng: random.Random
    pending_allocs: int = 0
    collections: list[int] = field(default_factory=lambda: [0, 0, 0])
    collected: list[int] = field(default_factory=lambda: [0, 0, 0])
    uncollectable: list[int] = field(default_factory=lambda: [0, 0, 0])
    triggers: list[int] = field(default_factory=lambda: [0, 0, 0])

    def allocate(self, n: int) -> None:
        self.pending_allocs += n
        while self.pending_allocs >= GC_THRESHOLD0:
            self.pending_allocs -= GC_THRESHOLD0
            gen = 0
            while gen < 2:
                self.triggers[gen] += 1
                if self.triggers[gen] % GC_ESCALATE != 0:
                    break
                gen += 1
            self.collections[gen] += 1
            # Cycles found: few in gen 0, more in the older generations.
            self.collected[gen] += self.rng.randint(0, 12) * (1 + 30 * gen)

    def stats(self) -> list[dict[str, int]]:
        return [
            {
                "collections": self.collections[g],
                "collected": self.collected[g],
                "uncollectable": self.uncollectable[g],
            }
            for g in range(3)
        ]


class GcShim:
    """Stands in for the `gc` module inside prometheus_client.gc_collector."""

    def __init__(self) -> None:
        self.current: GcState | None = None

    def get_stats(self) -> list[dict[str, int]]:
        if self.current is None:
            raise RuntimeError("gc stats read outside a simulated scrape")
        return self.current.stats()


@dataclass
class FakeProc:
    """A procfs tree for one program, rewritten before each scrape."""

    root: str
    pid: int
    start_ticks: int
    cpu_ns: int = CPU_STARTUP_NS
    rss_pages: int = RSS_BASE_PAGES

    def write(self, boot_s: int) -> None:
        pid_dir = os.path.join(self.root, str(self.pid))
        fd_dir = os.path.join(pid_dir, "fd")
        os.makedirs(fd_dir, exist_ok=True)
        with open(os.path.join(self.root, "stat"), "w", encoding="ascii") as f:
            f.write(f"cpu  0 0 0 0 0 0 0 0 0 0\nbtime {boot_s}\n")
        ticks = self.cpu_ns * int(CLOCK_TICKS) // NS_PER_S
        utime = int(ticks * USER_SHARE)
        stime = ticks - utime
        # Fields 3.. of proc(5) stat, after "pid (comm)"; only the ones the collector reads matter.
        rest = ["0"] * 50
        rest[0] = "S"
        rest[1] = "1"
        rest[11] = str(utime)
        rest[12] = str(stime)
        rest[19] = str(self.start_ticks)
        rest[20] = str(VSIZE_BYTES)
        rest[21] = str(self.rss_pages)
        with open(os.path.join(pid_dir, "stat"), "w", encoding="ascii") as f:
            f.write(f"{self.pid} (python3) {' '.join(rest)}\n")
        with open(os.path.join(pid_dir, "limits"), "w", encoding="ascii") as f:
            f.write(
                "Limit                     Soft Limit           Hard Limit           Units     \n"
                f"Max open files            {MAX_FDS:<21}{524288:<21}files     \n"
            )
        for i in range(OPEN_FDS):
            open(os.path.join(fd_dir, str(i)), "w", encoding="ascii").close()


def sleep(duration_ns: int) -> Iterator[int]:
    """What `time.sleep` is inside a simulated program: hand the duration to the scheduler."""
    yield duration_ns


@dataclass
class Target:
    port: int
    rng: random.Random
    registry: CollectorRegistry
    gc: GcState
    proc: FakeProc
    program: Callable[[Target], Iterator[int]]
    calls: int = 0

    @property
    def instance(self) -> str:
        return f"localhost:{self.port}"

    def sleep_ns(self) -> int:
        return round(self.rng.uniform(*SLEEP_S) * NS_PER_S)

    def call_done(self) -> None:
        self.calls += 1
        self.proc.cpu_ns += CPU_PER_CALL_NS
        self.gc.allocate(ALLOC_PER_CALL)


# The four programs of the doc. Each builds its metric in its own registry, then loops over the
# handler; `yield from sleep(...)` is its `time.sleep`.


def counter_program(t: Target) -> Iterator[int]:
    c = Counter("function_calls", "Number of times the function was called", ["module"], registry=t.registry)
    while True:
        c.labels("counter_demo").inc()
        yield from sleep(t.sleep_ns())
        t.call_done()


def gauge_program(t: Target) -> Iterator[int]:
    g = Gauge("process_time", "Time spent in the latest call, in seconds", ["module"], registry=t.registry)
    while True:
        with g.labels("gauge_demo").time():
            yield from sleep(t.sleep_ns())
        t.call_done()


def histogram_program(t: Target) -> Iterator[int]:
    h = Histogram("request_duration", "Duration of requests in seconds", ["module"], registry=t.registry)
    while True:
        with h.labels("histogram_demo").time():
            yield from sleep(t.sleep_ns())
        t.call_done()


def summary_program(t: Target) -> Iterator[int]:
    s = Summary(
        "request_processing_seconds", "Time spent processing request", ["module"], registry=t.registry
    )
    while True:
        with s.labels("pymo").time():
            yield from sleep(t.sleep_ns())
        t.call_done()


PROGRAMS: list[tuple[int, Callable[[Target], Iterator[int]]]] = [
    (8001, counter_program),
    (8002, gauge_program),
    (8003, histogram_program),
    (8004, summary_program),
]


def install_patches(clock: SimClock, gc_shim: GcShim) -> None:
    """Point the client's clock, timer, gc and platform reads at the simulation (see module doc)."""
    pc_metrics.time = types.SimpleNamespace(time=clock.time)  # type: ignore[attr-defined]
    pc_context_managers.default_timer = clock.monotonic  # type: ignore[attr-defined]
    pc_gc_collector.gc = gc_shim  # type: ignore[attr-defined]
    pc_gc_collector.platform = FixedPlatform  # type: ignore[attr-defined]
    pc_metrics.enable_created_metrics()


def parse_labels(body: str, lineno: int) -> list[tuple[str, str]]:
    """Split the inside of `{...}` into (name, raw escaped value) pairs."""
    pairs: list[tuple[str, str]] = []
    i = 0
    n = len(body)
    while i < n:
        eq = body.index("=", i)
        name = body[i:eq]
        if body[eq + 1] != '"':
            raise ValueError(f"line {lineno}: label {name!r} value not quoted")
        j = eq + 2
        while body[j] != '"':
            j += 2 if body[j] == "\\" else 1
        pairs.append((name, body[eq + 2 : j]))
        i = j + 1
        if i < n:
            if body[i] != ",":
                raise ValueError(f"line {lineno}: expected ',' at column {i + 1}")
            i += 1
    return pairs


def stamp_line(line: str, extra: list[tuple[str, str]], ts_ms: int, lineno: int) -> str:
    """Add target labels and a timestamp to one sample line of a client body."""
    if line.startswith("#") or not line:
        return line
    series, value = line.rsplit(" ", 1)
    if series.endswith("}"):
        brace = series.index("{")
        name = series[:brace]
        pairs = parse_labels(series[brace + 1 : -1], lineno)
    else:
        name, pairs = series, []
    clash = {k for k, _ in pairs} & {k for k, _ in extra}
    if clash:
        raise ValueError(f"line {lineno}: target exposes its own {sorted(clash)}")
    merged = sorted(pairs + extra)
    labels = ",".join(f'{k}="{v}"' for k, v in merged)
    return f"{name}{{{labels}}} {value} {ts_ms}"


def parse_start(text: str) -> int:
    when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))  # noqa: FURB162 (3.9+)
    if when.tzinfo is None:
        raise ValueError("--start needs a time zone, e.g. 2026-11-20T10:00:00Z")
    return int(when.timestamp()) * NS_PER_S


def generate(seed: int, start_ns: int, minutes: int, tmp: str) -> tuple[str, dict[str, object]]:
    boot_ns = start_ns - BOOT_BEFORE_START_NS
    clock = SimClock(boot_ns, boot_ns)
    gc_shim = GcShim()
    install_patches(clock, gc_shim)

    master = random.Random(seed)
    ticks = minutes * 60 * NS_PER_S // SCRAPE_INTERVAL_NS + 1  # both ends included

    targets: list[Target] = []
    # Event heap: (time_ns, sequence, kind, target index, scrape tick).
    events: list[tuple[int, int, str, int, int]] = []
    seq = 0
    for idx, (port, program) in enumerate(PROGRAMS):
        rng = random.Random(seed * 100_003 + port)
        # Each program is started by hand a few seconds before the first scrape.
        launch_ns = start_ns - round(master.uniform(3.0, 8.0) * NS_PER_S)
        proc_root = os.path.join(tmp, f"proc-{port}")
        fake = FakeProc(
            root=proc_root,
            pid=master.randint(30_000, 60_000),
            start_ticks=(launch_ns - boot_ns) * int(CLOCK_TICKS) // NS_PER_S,
        )
        fake.write(boot_ns // NS_PER_S)
        registry = CollectorRegistry()
        gc_state = GcState(rng=random.Random(seed * 100_003 + port + 50_000))
        gc_state.allocate(ALLOC_STARTUP)
        # The default registry's collectors, in the order a default registry lists them.
        GCCollector(registry=registry)
        PlatformCollector(registry=registry, platform=FixedPlatform)
        process = ProcessCollector(registry=registry, proc=proc_root, pid=lambda p=fake.pid: p)
        process._ticks = CLOCK_TICKS  # pinned: host-dependent otherwise
        process._pagesize = PAGE_SIZE
        target = Target(port=port, rng=rng, registry=registry, gc=gc_state, proc=fake, program=program)
        targets.append(target)
        # Importing the client and building the metric takes a moment after launch.
        first_ns = launch_ns + round(rng.uniform(0.05, 0.12) * NS_PER_S)
        heapq.heappush(events, (first_ns, seq, "run", idx, -1))
        seq += 1
    jitter = random.Random(seed + 1)
    for tick in range(ticks):
        for idx in range(len(targets)):
            ts_ms = (start_ns + tick * SCRAPE_INTERVAL_NS) // NS_PER_MS + jitter.randint(*JITTER_MS)
            heapq.heappush(events, (ts_ms * NS_PER_MS, seq, "scrape", idx, tick))
            seq += 1

    running: dict[int, Iterator[int]] = {}
    bodies: dict[tuple[int, int], tuple[int, str]] = {}
    scrapes_left = ticks * len(targets)
    crossed_ms: int | None = None
    final_counter = 0.0
    while scrapes_left:
        when_ns, _, kind, idx, tick = heapq.heappop(events)
        if when_ns < clock.now_ns:
            raise RuntimeError("simulated clock went backwards")
        clock.now_ns = when_ns
        target = targets[idx]
        if kind == "run":
            gen = running.get(idx)
            if gen is None:
                gen = target.program(target)
                running[idx] = gen
            delay_ns = next(gen)
            heapq.heappush(events, (when_ns + delay_ns, seq, "run", idx, -1))
            seq += 1
            continue
        # A scrape: serve the body as the client would at this instant.
        target.proc.cpu_ns += CPU_PER_SCRAPE_NS
        target.gc.allocate(ALLOC_PER_SCRAPE)
        target.proc.rss_pages = min(
            target.proc.rss_pages + target.rng.randint(0, RSS_PAGES_PER_SCRAPE_MAX),
            RSS_BASE_PAGES + RSS_GROWTH_CAP_PAGES,
        )
        target.proc.write(boot_ns // NS_PER_S)
        gc_shim.current = target.gc
        body = generate_latest(target.registry).decode("utf-8")
        gc_shim.current = None
        ts_ms = when_ns // NS_PER_MS
        bodies[(tick, idx)] = (ts_ms, body)
        scrapes_left -= 1
        if target.port == 8001:
            for line in body.splitlines():
                if line.startswith("function_calls_total{"):
                    final_counter = float(line.rsplit(" ", 1)[1])
                    if crossed_ms is None and final_counter > 100:
                        crossed_ms = ts_ms

    version = metadata.version("prometheus-client")
    start_iso = dt.datetime.fromtimestamp(start_ns // NS_PER_S, dt.timezone.utc).isoformat()  # noqa: UP017 (3.9+)
    out: list[str] = [
        "# Motivating example of shared/docs/motivating-example.md: four prometheus_client targets",
        f"# scraped every 15s for {minutes}m from {start_iso},",
        f"# text format 0.0.4 bodies of prometheus-client {version}, simulated clock, seed {seed}.",
        "# Each sample line carries the scrape's job/instance labels and timestamp (ms).",
        "# Generated by examples/gen_motivating.py; regenerate rather than edit.",
    ]
    lineno = len(out)
    for tick in range(ticks):
        for idx, target in enumerate(targets):
            ts_ms, body = bodies[(tick, idx)]
            extra = [("instance", target.instance), ("job", JOB)]
            out.append(f'# scrape job="{JOB}" instance="{target.instance}" timestamp_ms={ts_ms}')
            lineno += 1
            for line in body.splitlines():
                lineno += 1
                out.append(stamp_line(line, extra, ts_ms, lineno))
    stats = {
        "scrapes": ticks * len(targets),
        "first_ms": min(ts for ts, _ in bodies.values()),
        "last_ms": max(ts for ts, _ in bodies.values()),
        "final_counter": final_counter,
        "crossed_100_ms": crossed_ms,
        "client_version": version,
    }
    return "\n".join(out) + "\n", stats


# One sample line as this script writes it: a name, a non-empty label set, a value, a timestamp.
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
_SAMPLE = re.compile(rf"^([a-zA-Z_:][a-zA-Z0-9_:]*)\{{({_LABEL}(?:,{_LABEL})*)\}} (\S+) (-?[0-9]+)$")
_COMMENT = re.compile(r"^# (?:(?:HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .*|(?!HELP |TYPE ).*)$")


def verify(text: str, scrapes: int) -> dict[str, int]:
    """Check the written file line by line; every scrape must hold every series exactly once.

    Catches a body the stamping would have mangled and a series that comes and goes (the figures of
    the report assume one sample per series per scrape).
    """
    last_ts: dict[str, int] = {}
    counts: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.startswith("#"):
            if not _COMMENT.match(line):
                raise ValueError(f"line {lineno}: malformed HELP/TYPE line: {line!r}")
            continue
        m = _SAMPLE.match(line)
        if m is None:
            raise ValueError(f"line {lineno}: not a timestamped sample line: {line!r}")
        try:
            float(m.group(3))
        except ValueError:
            raise ValueError(f"line {lineno}: value {m.group(3)!r} is not a float") from None
        key = f"{m.group(1)}{{{m.group(2)}}}"
        ts = int(m.group(4))
        if ts <= last_ts.get(key, -1):
            raise ValueError(f"line {lineno}: timestamp {ts} not after the previous one of {key}")
        last_ts[key] = ts
        counts[key] = counts.get(key, 0) + 1
    uneven = sorted(k for k, n in counts.items() if n * len(PROGRAMS) != scrapes)
    if uneven:
        raise ValueError(f"{len(uneven)} series miss scrapes, e.g. {uneven[0]}")
    return {"series": len(counts), "samples": sum(counts.values())}


def main(argv: list[str] | None = None) -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--out", default=os.path.join(here, "data", "motivating.prom"))
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--start", default=DEFAULT_START, help="first scrape tick, ISO 8601 with zone")
    ap.add_argument("--minutes", type=int, default=DEFAULT_MINUTES)
    args = ap.parse_args(argv)
    if args.minutes < 1:
        ap.error("--minutes must be at least 1")
    with tempfile.TemporaryDirectory(prefix="gen_motivating-") as tmp:
        text, stats = generate(args.seed, parse_start(args.start), args.minutes, tmp)
    stats.update(verify(text, int(stats["scrapes"])))
    if stats["crossed_100_ms"] is None:
        print("warning: function_calls_total never passes 100, the alert of the doc", file=sys.stderr)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    print(f"wrote {args.out}: {len(text.encode('utf-8'))} bytes", file=sys.stderr)
    for key, value in stats.items():
        print(f"  {key}: {value}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
