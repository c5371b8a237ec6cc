#!/usr/bin/env python3
"""Issue 5's figure: `tsdbctl serve` and Prometheus 2.42 scraping the same simulated targets.

Starts `examples/scrape_sim` (N targets x M series on consecutive ports of 127.0.0.1), writes one
prometheus.yml (one job, N static targets, the interval), then runs each system in turn -- one after
the other, not at the same time, so that on a 2-core machine neither steals the other's CPU -- on a
fresh data directory for the same duration, in three phases:

  warmup   series creation (first scrapes) and start-up; not in the steady-state figures
  ingest   scraping only: CPU rate and memory of ingestion alone
  query    scraping plus a fixed set of PromQL queries every --query-every seconds through
           /api/v1/query and /api/v1/query_range: latencies (median, p90) while ingesting, and the
           CPU rate with queries

Every --sample-every seconds it reads the server's CPU seconds (utime + stime of the process itself,
children excluded, from /proc/PID/stat), VmRSS and VmHWM (/proc/PID/status), the simulator's CPU, and
the machine's load (/proc/loadavg, busy share of /proc/stat), so the noise from other work on the
machine is on record. At the end it checks that the system really ingested everything (count(up == 1),
sum(scrape_samples_scraped), the number of series, scrapes per target over the ingest phase, scrape
durations) and keeps the system's own interval/scrape metrics from its /metrics.

Writes OUT/<system>.json per system and OUT/report.md with every system found in OUT (so the two sides
may be run at different times: `--systems prometheus`, later `--systems tsdbctl`, same --out), with
the ratios tsdbctl / Prometheus.

  python3 bench/scrape_compare.py --out bench-out [--systems prometheus,tsdbctl] [--targets 1000]
      [--series 1000] [--interval 15] [--warmup 120] [--ingest 300] [--query 300]
  python3 bench/scrape_compare.py --out bench-out --report-only

Needs: target/release/examples/scrape_sim (cargo build --release --example scrape_sim),
target/release/tsdbctl (cargo build --release), prometheus on PATH. Raises its soft open-files limit
to the hard limit (children inherit it).
"""

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

# Series the scrapers add per target: up, scrape_duration_seconds, scrape_samples_scraped,
# scrape_samples_post_metric_relabeling, scrape_series_added.
SYNTHETIC_PER_TARGET = 5


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- /proc


def proc_cpu_seconds(pid):
    """utime + stime of the process itself (children excluded), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    # rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def proc_mem_kb(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, val = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(val.split()[0])
    return out


def machine_busy_jiffies():
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields[:8]) - idle, sum(fields[:8])


def loadavg1():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


# ---------------------------------------------------------------- ports, processes


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_range(n, start=20000, stop=60000):
    """The first base port >= start with n consecutive free ports on 127.0.0.1."""
    base = start
    while base + n < stop:
        for i in range(n):
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", base + i))
            except OSError:
                base = base + i + 1
                break
            finally:
                s.close()
        else:
            return base
    raise RuntimeError(f"no {n} consecutive free ports in {start}..{stop}")


class Children:
    """Every process started here, killed on exit whatever happens."""

    def __init__(self):
        self.procs = []

    def start(self, argv, log_path, **kw):
        f = open(log_path, "wb")
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, **kw)
        p._log = f
        self.procs.append(p)
        return p

    def stop(self, p, timeout=60):
        """SIGTERM, then SIGKILL after timeout; returns seconds to exit."""
        t = time.time()
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        p._log.close()
        if p in self.procs:
            self.procs.remove(p)
        return time.time() - t

    def stop_all(self):
        for p in list(self.procs):
            self.stop(p, timeout=20)


# ---------------------------------------------------------------- HTTP


def http_get(url, timeout=120):
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            body = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        body, status = e.read(), e.code
    return status, body, time.perf_counter() - t


def api(base, path, **params):
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    status, body, secs = http_get(url)
    try:
        doc = json.loads(body)
    except ValueError:
        doc = {"status": "error", "error": f"HTTP {status}: {body[:200]!r}"}
    return doc, secs


def scalar(base, expr):
    """The single value of an instant query (None if the result is empty or an error)."""
    doc, _ = api(base, "/api/v1/query", query=expr)
    if doc.get("status") != "success":
        return None
    res = doc["data"]["result"]
    if doc["data"]["resultType"] == "scalar":
        return float(res[1])
    return float(res[0]["value"][1]) if res else None


def wait_ready(base, proc, timeout):
    t = time.time()
    while time.time() - t < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before becoming ready")
        for path in ("/-/ready", "/api/v1/status/buildinfo", "/api/v1/query?query=1"):
            try:
                status, _, _ = http_get(base + path, timeout=2)
                if status == 200:
                    return time.time() - t
            except OSError:
                pass
        time.sleep(0.5)
    raise RuntimeError(f"not ready after {timeout} s")


# ---------------------------------------------------------------- the measurement


def queries(base_port):
    """The fixed query set: (name, kind, expr). Instant queries at now; range queries over the last
    5 minutes at a 15 s step. `one` is the first target's instance."""
    one = f"127.0.0.1:{base_port}"
    return [
        ("sum_rate_all", "instant", "sum(rate(http_requests_total[1m]))"),
        ("one_target_selector", "instant", f'http_requests_total{{instance="{one}"}}'),
        ("one_target_rate_by_code", "instant", f'sum by (code) (rate(http_requests_total{{instance="{one}"}}[1m]))'),
        ("count_all_series", "instant", 'count({__name__=~".+"})'),
        ("range_sum_rate_handler", "range", 'sum(rate(http_requests_total{handler="/api/v1/resource_3"}[1m]))'),
        ("range_p90_latency_handler", "range",
         'histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket{handler="/api/v1/resource_0"}[1m])))'),
        ("range_one_target_cpu", "range", f'rate(process_cpu_seconds_total{{instance="{one}"}}[1m])'),
    ]


def run_query(base, kind, expr):
    now = time.time()
    if kind == "instant":
        doc, secs = api(base, "/api/v1/query", query=expr, time=f"{now:.3f}")
    else:
        doc, secs = api(base, "/api/v1/query_range", query=expr, start=f"{now - 300:.3f}", end=f"{now:.3f}", step="15")
    ok = doc.get("status") == "success"
    n = len(doc["data"]["result"]) if ok and isinstance(doc["data"].get("result"), list) else None
    return ok, secs, n, None if ok else doc.get("error")


def percentile(xs, q):
    xs = sorted(xs)
    if not xs:
        return None
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def command_for(system, args, db, config, port):
    if system == "prometheus":
        return [args.prometheus, f"--config.file={config}", f"--storage.tsdb.path={db}",
                f"--web.listen-address=127.0.0.1:{port}"]
    return [args.tsdbctl, "serve", "--db", db, "--config", config, "--listen", f"127.0.0.1:{port}"]


def measure(system, args, children, sim, base_port, config, workdir):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    db = os.path.join(workdir, f"{system}-data")
    os.makedirs(db, exist_ok=True)
    argv = command_for(system, args, db, config, port)
    log(f"{system}: {' '.join(argv)}")
    proc = children.start(argv, os.path.join(args.out, f"{system}.log"), cwd=workdir)
    t0 = time.time()
    ready_s = wait_ready(base, proc, 120)
    log(f"{system}: ready after {ready_s:.1f} s (pid {proc.pid})")

    samples = []
    stop = threading.Event()

    def sampler():
        busy0, total0 = machine_busy_jiffies()
        while not stop.is_set():
            try:
                busy, total = machine_busy_jiffies()
                mem = proc_mem_kb(proc.pid)
                samples.append({
                    "t": time.time() - t0,
                    "cpu_s": proc_cpu_seconds(proc.pid),
                    "sim_cpu_s": proc_cpu_seconds(sim.pid),
                    "rss_kb": mem.get("VmRSS"),
                    "hwm_kb": mem.get("VmHWM"),
                    "rss_anon_kb": mem.get("RssAnon"),
                    "rss_file_kb": mem.get("RssFile"),
                    "load1": loadavg1(),
                    "machine_busy": (busy - busy0) / max(1, total - total0),
                })
                busy0, total0 = busy, total
            except (OSError, IndexError, ValueError):
                pass  # the process is exiting
            stop.wait(args.sample_every)

    th = threading.Thread(target=sampler, daemon=True)
    th.start()

    end_warmup = args.warmup
    end_ingest = end_warmup + args.ingest
    end_all = end_ingest + args.query

    def sleep_until(t):
        while time.time() - t0 < t:
            if proc.poll() is not None:
                raise RuntimeError(f"{system} exited with {proc.returncode}")
            time.sleep(min(1.0, max(0.0, t - (time.time() - t0))))

    sleep_until(end_warmup)
    up = scalar(base, "count(up == 1)")
    log(f"{system}: warmup over, count(up == 1) = {up}")
    sleep_until(end_ingest)
    log(f"{system}: ingest phase over; queries every {args.query_every} s")

    qset = queries(base_port)
    lat = {name: [] for name, _, _ in qset}
    errors = {}
    results = {}
    rounds = 0
    # Rounds start on a fixed schedule (every --query-every seconds from the end of the ingest phase),
    # so every system runs the same rounds: a system that finishes a round early waits for the next
    # slot instead of running extra rounds, which would charge the faster system more CPU. A round
    # that overruns its slot delays the next one.
    while end_ingest + rounds * args.query_every < end_all - 1:
        sleep_until(end_ingest + rounds * args.query_every)
        for name, kind, expr in qset:
            ok, secs, n, err = run_query(base, kind, expr)
            if ok:
                lat[name].append(secs)
                results[name] = n
            else:
                errors.setdefault(name, []).append(str(err)[:300])
        rounds += 1
    sleep_until(end_all)

    ingest_s = int(args.ingest)
    checks = {
        "count_up_eq_1": scalar(base, "count(up == 1)"),
        "sum_scrape_samples_scraped": scalar(base, "sum(scrape_samples_scraped)"),
        "count_series": scalar(base, 'count({__name__=~".+"})'),
        # Scrapes stored per target over the ingest+query phases: a system that keeps up stores one per
        # interval; fewer means missed or late scrapes.
        "scrapes_per_target_over_window": scalar(
            base, f"avg(count_over_time(up[{ingest_s + int(args.query)}s]))"),
        "expected_scrapes_per_target": (ingest_s + args.query) / args.interval,
        "scrape_duration_p50_s": scalar(base, "quantile(0.5, scrape_duration_seconds)"),
        "scrape_duration_p99_s": scalar(base, "quantile(0.99, scrape_duration_seconds)"),
        "scrape_duration_max_s": scalar(base, "max(scrape_duration_seconds)"),
        "max_over_time_scrape_duration_max_s": scalar(
            base, f"max(max_over_time(scrape_duration_seconds[{ingest_s + int(args.query)}s]))"),
    }
    own_metrics = []
    try:
        status, body, _ = http_get(base + "/metrics", timeout=30)
        for line in body.decode("utf-8", "replace").splitlines():
            if line.startswith(("prometheus_target_interval_length_seconds", "prometheus_tsdb_head_series ",
                                "prometheus_tsdb_head_samples_appended_total", "process_",
                                "go_memstats_heap_inuse_bytes", "tsdb_", "scrape_")) and not line.startswith("#"):
                own_metrics.append(line)
    except OSError as e:
        own_metrics.append(f"/metrics failed: {e}")

    stop.set()
    th.join()
    final_cpu = proc_cpu_seconds(proc.pid)
    final_mem = proc_mem_kb(proc.pid)
    shutdown_s = children.stop(proc)
    disk = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(db) for f in fs)
    log(f"{system}: stopped in {shutdown_s:.1f} s; checks {checks}")

    def at(t):
        """The sample closest to t seconds after start."""
        return min(samples, key=lambda s: abs(s["t"] - t))

    def rate(a, b, key="cpu_s"):
        return (b[key] - a[key]) / (b["t"] - a["t"])

    # The phase boundaries are the last samples before them: the first query round starts right at
    # the end of the ingest phase, and a sample taken after it would count that query's memory
    # and CPU as ingestion's.
    w, i, e = last_before(samples, end_warmup), last_before(samples, end_ingest), samples[-1]
    steady = [s for s in samples if s["t"] >= end_warmup]
    return {
        "system": system,
        "argv": argv,
        "ready_s": ready_s,
        "phases_s": {"warmup": args.warmup, "ingest": args.ingest, "query": args.query},
        "cpu_s_total": final_cpu,
        "cpu_s_warmup": w["cpu_s"],
        "cpu_cores_ingest": rate(w, i),
        "cpu_cores_ingest_and_query": rate(i, e) if e["t"] > i["t"] + 1 else None,
        "cpu_s_per_scrape_cycle_ingest": rate(w, i) * args.interval,
        "sim_cpu_cores": rate(samples[0], e, "sim_cpu_s"),
        "rss_mb_end": final_mem.get("VmRSS", 0) / 1024,
        "rss_mb_end_of_ingest": i["rss_kb"] / 1024,
        "rss_mb_median_steady": statistics.median(s["rss_kb"] for s in steady) / 1024,
        "rss_anon_mb_end": final_mem.get("RssAnon", 0) / 1024,
        "hwm_mb": final_mem.get("VmHWM", 0) / 1024,
        "load1_mean": statistics.mean(s["load1"] for s in samples),
        "machine_busy_mean": statistics.mean(s["machine_busy"] for s in samples[1:]) if len(samples) > 1 else None,
        "disk_mb_end": disk / 2**20,
        "shutdown_s": shutdown_s,
        "query_rounds": rounds,
        "queries": {
            name: {
                "kind": kind,
                "expr": expr,
                "n": len(lat[name]),
                "median_ms": 1000 * statistics.median(lat[name]) if lat[name] else None,
                "p90_ms": 1000 * percentile(lat[name], 0.9) if lat[name] else None,
                "result_len": results.get(name),
                "errors": errors.get(name, [])[:3],
                "error_count": len(errors.get(name, [])),
            }
            for name, kind, expr in qset
        },
        "checks": checks,
        "own_metrics": own_metrics,
        "samples": samples,
    }


def write_config(path, targets, base_port, interval, timeout):
    lines = [
        "global:",
        f"  scrape_interval: {interval}s",
        f"  scrape_timeout: {timeout}s",
        f"  evaluation_interval: {interval}s",
        "scrape_configs:",
        "  - job_name: sim",
        "    static_configs:",
        "      - targets:",
    ]
    lines += [f"          - 127.0.0.1:{base_port + i}" for i in range(targets)]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


# ---------------------------------------------------------------- report


def fmt(v, digits=2):
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def last_before(samples, t):
    """The last sample taken at or before t seconds after start (the first one if none is)."""
    before = [s for s in samples if s["t"] <= t]
    return before[-1] if before else samples[0]


def report(out):
    runs = {}
    for name in ("prometheus", "tsdbctl"):
        p = os.path.join(out, f"{name}.json")
        if os.path.exists(p):
            with open(p) as f:
                runs[name] = json.load(f)
    if not runs:
        return "no results\n"
    for r in runs.values():
        # Memory per phase, from the samples (older result files lack these keys).
        ph = r["phases_s"]
        w, i = ph["warmup"], ph["warmup"] + ph["ingest"]
        ingest = [s["rss_kb"] for s in r["samples"] if w <= s["t"] <= i and s.get("rss_kb")]
        query = [s["rss_kb"] for s in r["samples"] if s["t"] > i and s.get("rss_kb")]
        r["rss_mb_max_ingest"] = max(ingest) / 1024 if ingest else None
        r["rss_mb_median_ingest"] = statistics.median(ingest) / 1024 if ingest else None
        r["rss_mb_max_query"] = max(query) / 1024 if query else None
        # End-of-phase figures from the last sample before each boundary (older result files took
        # the nearest sample, which could fall inside the first query round).
        ws, is_ = last_before(r["samples"], w), last_before(r["samples"], i)
        if is_["t"] > ws["t"]:
            r["cpu_cores_ingest"] = (is_["cpu_s"] - ws["cpu_s"]) / (is_["t"] - ws["t"])
            r["cpu_s_per_scrape_cycle_ingest"] = r["cpu_cores_ingest"] * r.get("setup", {}).get("interval", 15)
        r["cpu_s_warmup"] = ws["cpu_s"]
        r["rss_mb_end_of_ingest"] = is_["rss_kb"] / 1024
        e = r["samples"][-1]
        if e["t"] > is_["t"] + 1:
            r["cpu_cores_ingest_and_query"] = (e["cpu_s"] - is_["cpu_s"]) / (e["t"] - is_["t"])
    p, t = runs.get("prometheus"), runs.get("tsdbctl")

    def row(label, key, digits=2, lower_is_better=True):
        pv = p.get(key) if p else None
        tv = t.get(key) if t else None
        ratio = f"{tv / pv:.2f}" if isinstance(pv, (int, float)) and isinstance(tv, (int, float)) and pv else "—"
        return f"| {label} | {fmt(pv, digits)} | {fmt(tv, digits)} | {ratio} |"

    lines = [
        "| | Prometheus 2.42 | tsdbctl serve | tsdbctl / Prometheus |",
        "|---|---:|---:|---:|",
        row("CPU seconds, whole run", "cpu_s_total", 1),
        row("CPU seconds, warmup (start + series creation)", "cpu_s_warmup", 1),
        row("CPU cores, ingest only", "cpu_cores_ingest", 3),
        row("CPU seconds per 15 s scrape cycle, ingest only", "cpu_s_per_scrape_cycle_ingest", 2),
        row("CPU cores, ingest + queries", "cpu_cores_ingest_and_query", 3),
        row("Query rounds", "query_rounds", 0),
        row("RSS MiB at end of ingest phase", "rss_mb_end_of_ingest", 0),
        row("RSS MiB, highest sample of the ingest phase", "rss_mb_max_ingest", 0),
        row("RSS MiB, median of the ingest phase", "rss_mb_median_ingest", 0),
        row("RSS MiB, highest sample of the query phase", "rss_mb_max_query", 0),
        row("RSS MiB at end", "rss_mb_end", 0),
        row("Peak RSS (VmHWM) MiB, whole run", "hwm_mb", 0),
        row("Data directory MiB at end", "disk_mb_end", 0),
        row("Startup to ready, s", "ready_s", 1),
        row("SIGTERM to exit, s", "shutdown_s", 1),
    ]
    names = list((p or t)["queries"].keys())
    lines += ["", "Query latency while ingesting (client side, HTTP + JSON included), median / p90 in ms:", "",
              "| query | Prometheus 2.42 | tsdbctl serve | ratio of medians |", "|---|---:|---:|---:|"]
    for n in names:
        def cell(r):
            if not r or n not in r["queries"]:
                return "—", None
            q = r["queries"][n]
            if q["median_ms"] is None:
                return (f"failed ({q['error_count']})" if q["error_count"] else "not run"), None
            return f"{q['median_ms']:.0f} / {q['p90_ms']:.0f}", q["median_ms"]
        pc, pm = cell(p)
        tc, tm = cell(t)
        ratio = f"{tm / pm:.2f}" if pm and tm else "—"
        expr = (p or t)["queries"][n]["expr"]
        kind = (p or t)["queries"][n]["kind"]
        lines.append(f"| `{expr}` ({kind}) | {pc} | {tc} | {ratio} |")
    lines += ["", "Ingestion checks at the end of the run:", "",
              "| check | Prometheus 2.42 | tsdbctl serve |", "|---|---:|---:|"]
    for k in (p or t)["checks"]:
        lines.append(f"| {k} | {fmt((p or {}).get('checks', {}).get(k), 3)} | {fmt((t or {}).get('checks', {}).get(k), 3)} |")
    lines += ["", "Machine during each run (2 cores, shared):", "",
              "| | Prometheus 2.42 | tsdbctl serve |", "|---|---:|---:|"]
    for label, key in (("load average (1 min), mean", "load1_mean"),
                       ("machine busy share (all processes), mean", "machine_busy_mean"),
                       ("simulator CPU cores", "sim_cpu_cores")):
        lines.append(f"| {label} | {fmt((p or {}).get(key), 3)} | {fmt((t or {}).get(key), 3)} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- main


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="results directory (JSON per system, report.md)")
    ap.add_argument("--systems", default="prometheus,tsdbctl")
    ap.add_argument("--targets", type=int, default=1000)
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--interval", type=int, default=15)
    ap.add_argument("--timeout", type=int, default=10, help="scrape_timeout, seconds")
    ap.add_argument("--warmup", type=float, default=120)
    ap.add_argument("--ingest", type=float, default=360)
    ap.add_argument("--query", type=float, default=360)
    ap.add_argument("--query-every", type=float, default=30)
    ap.add_argument("--sample-every", type=float, default=5)
    ap.add_argument("--pause", type=float, default=20, help="seconds between systems")
    ap.add_argument("--sim", default=os.path.join(root, "target/release/examples/scrape_sim"))
    ap.add_argument("--sim-threads", type=int, default=1)
    ap.add_argument("--tsdbctl", default=os.path.join(root, "target/release/tsdbctl"))
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "prometheus")
    ap.add_argument("--keep-data", action="store_true")
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    # SIGTERM unwinds through the `finally` that stops the children.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.makedirs(args.out, exist_ok=True)
    if args.report_only:
        md = report(args.out)
        with open(os.path.join(args.out, "report.md"), "w") as f:
            f.write(md)
        print(md)
        return

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 4 * args.targets + 1000
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))
    log(f"open-files limit {resource.getrlimit(resource.RLIMIT_NOFILE)[0]} (need ~{need})")

    children = Children()
    workdir = tempfile.mkdtemp(prefix="scrape-compare-")
    try:
        base_port = free_port_range(args.targets)
        sim = children.start([args.sim, "--targets", str(args.targets), "--series", str(args.series),
                              "--base-port", str(base_port), "--interval", str(args.interval),
                              "--threads", str(args.sim_threads)], os.path.join(args.out, "scrape_sim.log"))
        for i in (0, args.targets - 1):
            for _ in range(100):
                try:
                    status, body, _ = http_get(f"http://127.0.0.1:{base_port + i}/metrics", timeout=5)
                    break
                except OSError:
                    time.sleep(0.2)
            else:
                raise RuntimeError(f"simulator target {i} does not answer")
            lines = [l for l in body.decode().splitlines() if l and not l.startswith("#")]
            assert status == 200 and len(lines) == args.series, (status, len(lines))
        log(f"simulator: {args.targets} targets x {args.series} series on ports {base_port}.."
            f"{base_port + args.targets - 1} (pid {sim.pid})")
        config = os.path.join(workdir, "prometheus.yml")
        write_config(config, args.targets, base_port, args.interval, min(args.timeout, args.interval))
        shutil.copy(config, os.path.join(args.out, "prometheus.yml"))

        for n, system in enumerate(s.strip() for s in args.systems.split(",")):
            if n:
                time.sleep(args.pause)
            sim_cpu0 = proc_cpu_seconds(sim.pid)
            res = measure(system, args, children, sim, base_port, config, workdir)
            res["sim_cpu_s_during_run"] = proc_cpu_seconds(sim.pid) - sim_cpu0
            res["setup"] = {k: getattr(args, k) for k in ("targets", "series", "interval", "timeout", "query_every",
                                                          "sample_every", "sim_threads")}
            res["date_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            with open(os.path.join(args.out, f"{system}.json"), "w") as f:
                json.dump(res, f, indent=1)
            if not args.keep_data:
                shutil.rmtree(os.path.join(workdir, f"{system}-data"), ignore_errors=True)
        children.stop(sim)
        with open(os.path.join(args.out, "scrape_sim.log")) as f:
            log(f.read().strip().splitlines()[-1])
    finally:
        children.stop_all()
        if not args.keep_data:
            shutil.rmtree(workdir, ignore_errors=True)
    md = report(args.out)
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
