#!/usr/bin/env python3
"""Issue 6's figure: 1,000 recording rules in `tsdbctl serve` and in Prometheus 2.42, over the same
simulated targets (100 targets x 100 series of `examples/scrape_sim.rs`, 15 s intervals).

Builds on `bench/scrape_compare.py` (its /proc readers, process guard and HTTP helpers). Starts the
simulator once, then runs each system in turn -- one after the other, never at the same time, so that
on a 2-core machine neither takes CPU from the other -- on a fresh data directory, in four phases:

  warmup    scraping only, from start until --warmup s. Long enough for the `[5m]` windows of the
            rules to fill (the rules are loaded only after it, so their first evaluation already has
            five minutes of data). Its tail [--baseline-from, --warmup] gives the scrape-only CPU rate,
            the baseline that the rules' CPU is compared with.
  reload    the configuration file is rewritten with `rule_files` and the server gets SIGHUP (both
            systems re-read their configuration on it); the harness waits until the server reports
            all N rules loaded (`/api/v1/rules`, else the sum of `prometheus_rule_group_rules`).
  settle    --settle s of rule evaluation not measured (first iterations).
  measure   --measure s: the figures.

Every --sample-every s it reads the server's CPU seconds (utime + stime of the process itself from
/proc/PID/stat, not the server's own metric), VmRSS/VmHWM, the load average, and the server's /metrics,
from which it keeps the rule-group metrics that Prometheus exports (and tsdbctl exports under the same
names): `prometheus_rule_group_last_duration_seconds`, `..._last_evaluation_timestamp_seconds`,
`..._last_evaluation_samples`, `..._iterations_total`, `..._iterations_missed_total`,
`prometheus_rule_evaluation_failures_total`, `prometheus_rule_group_duration_seconds_{sum,count}`.

Figures per system:
  * evaluation time per iteration: for each group, the mean of its distinct iterations' durations
    (`last_duration` keyed by `last_evaluation_timestamp`) seen in the measurement window, summed over
    the groups (groups run concurrently, so this is the work of one round of all 1,000 rules, not a
    wall time); also the plain mean over samples of sum(last_duration), and, where the summary exists,
    delta(group_duration_seconds_sum) / (delta(_count) / groups);
  * CPU seconds per minute over the measurement window, the scrape-only baseline of the warmup's tail,
    and their difference (the rules' share);
  * RSS at the end of the warmup, median and highest over the measurement window;
  * correctness: for a few recorded series (one rule per family, unfiltered and filtered), the newest
    recorded sample (timestamp ts, value) is compared with the rule's expression evaluated at ts
    (a) by the same server (`/api/v1/query?time=ts`), and (b) by the *other* engine on a copy of this
    run's data directory after the server stopped (the directories are in the same format): tsdbctl
    serve on Prometheus' copy, Prometheus on tsdbctl's copy, both with no scrape job and no rule. Both
    comparisons evaluate the same expression over the same stored samples at the same timestamp, so
    the values must agree within float rounding (relative 1e-9); comparing the two live runs directly
    could not, as their scrapes land at different times.

Writes OUT/rules-<system>.json per system and OUT/rules-report.md with the systems found in OUT, with the
ratios tsdbctl / Prometheus.

  python3 bench/rules_compare.py --out bench/results [--systems prometheus,tsdbctl] [--rules 1000]
      [--targets 100] [--series 100] [--warmup 330] [--baseline-from 90] [--settle 45] [--measure 300]
  python3 bench/rules_compare.py --out bench/results --report-only
  python3 bench/rules_compare.py --print-rules [--rules 1000] > rules.yml     # the rule file alone

Needs target/release/examples/scrape_sim, target/release/tsdbctl, prometheus on PATH (and promtool to
check the generated rule file, if installed).
"""

import argparse
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scrape_compare as sc  # noqa: E402  (shared helpers of the scrape harness)

log = sc.log

# ---------------------------------------------------------------- the rules

# Labels of the simulator's series at --series 100 (see examples/scrape_sim.rs): http_requests_total
# for handlers resource_0 (4 methods x 5 codes) and resource_1; two request-duration histograms
# (resource_0, GET and POST); app_queue_depth{queue,shard} with 4 queues and shards 0..4;
# app_worker_busy_ratio{pool,worker} with pools io/cpu/net. Filters that match nothing at some size
# only make a rule cheaper; the report counts the recorded series.
HTTP_FILTERS = [
    None, 'method="GET"', 'method="POST"', 'method=~"PUT|DELETE"', 'handler="/api/v1/resource_0"',
    'handler="/api/v1/resource_1"', 'code=~"2.."', 'code=~"4..|5.."',
]
HTTP_FILTERS_NO_CODE = HTTP_FILTERS[:6]
HIST_FILTERS = [None, 'method="GET"', 'method="POST"']
QUEUE_FILTERS = [None, 'shard="0"', 'shard="1"', 'shard="2"', 'shard="3"', 'shard="4"', 'queue=~"ingest|index"']
POOL_FILTERS = [None, 'pool="io"', 'pool="cpu"', 'pool="net"']

# (record name, expression with {S} for the selector's matchers, filters). {S} is empty or a
# comma-separated matcher list; `{{` / `}}` are literal braces.
FAMILIES = [
    ("handler:http_requests:rate5m", "sum by (handler) (rate(http_requests_total{{{S}}}[5m]))", HTTP_FILTERS),
    ("code:http_requests:rate5m", "sum by (code) (rate(http_requests_total{{{S}}}[5m]))", HTTP_FILTERS),
    ("method_code:http_requests:rate5m", "sum by (method, code) (rate(http_requests_total{{{S}}}[5m]))", HTTP_FILTERS),
    ("instance:http_requests:rate5m", "sum by (instance) (rate(http_requests_total{{{S}}}[5m]))", HTTP_FILTERS),
    ("job:http_requests:rate1m", "sum by (job) (rate(http_requests_total{{{S}}}[1m]))", HTTP_FILTERS),
    ("handler:http_requests_errors:ratio_rate5m",
     'sum by (handler) (rate(http_requests_total{{{S}{C}code=~"5.."}}[5m]))'
     " / sum by (handler) (rate(http_requests_total{{{S}}}[5m]))", HTTP_FILTERS_NO_CODE),
    ("handler:http_request_duration_seconds:p90_5m",
     "histogram_quantile(0.9, sum by (le, handler) (rate(http_request_duration_seconds_bucket{{{S}}}[5m])))",
     HIST_FILTERS),
    ("handler_method:http_request_duration_seconds:p99_5m",
     "histogram_quantile(0.99, sum by (le, handler, method) (rate(http_request_duration_seconds_bucket{{{S}}}[5m])))",
     HIST_FILTERS),
    ("job:http_request_duration_seconds:p50_5m",
     "histogram_quantile(0.5, sum by (le) (rate(http_request_duration_seconds_bucket{{{S}}}[5m])))", HIST_FILTERS),
    ("handler:http_request_duration_seconds:mean5m",
     "sum by (handler) (rate(http_request_duration_seconds_sum{{{S}}}[5m]))"
     " / sum by (handler) (rate(http_request_duration_seconds_count{{{S}}}[5m]))", HIST_FILTERS),
    ("queue:app_queue_depth:avg", "avg by (queue) (app_queue_depth{{{S}}})", QUEUE_FILTERS),
    ("queue:app_queue_depth:max_over_time5m", "max by (queue) (max_over_time(app_queue_depth{{{S}}}[5m]))",
     QUEUE_FILTERS),
    ("shard:app_queue_depth:sum", "sum by (shard) (app_queue_depth{{{S}}})", QUEUE_FILTERS),
    ("queue:app_queue_depth:p90", "quantile by (queue) (0.9, app_queue_depth{{{S}}})", QUEUE_FILTERS),
    ("pool:app_worker_busy_ratio:avg", "avg by (pool) (app_worker_busy_ratio{{{S}}})", POOL_FILTERS),
    ("pool:app_worker_busy_ratio:avg_over_time5m",
     "avg by (pool) (avg_over_time(app_worker_busy_ratio{{{S}}}[5m]))", POOL_FILTERS),
    ("instance:app_worker_busy_ratio:max_over_time5m",
     "max by (instance) (max_over_time(app_worker_busy_ratio{{{S}}}[5m]))", POOL_FILTERS),
    ("instance:process_cpu_seconds:rate5m", "rate(process_cpu_seconds_total{{{S}}}[5m])", [None]),
    ("job:process_resident_memory_bytes:max_over_time5m",
     "max by (job) (max_over_time(process_resident_memory_bytes{{{S}}}[5m]))", [None]),
]

# Group sizes, cycled: groups of 10 to 50 rules.
GROUP_SIZES = [10, 20, 30, 40, 50]
RULE_FILE_NAME = "bench-rules.yml"


def slug(matcher):
    if matcher is None:
        return "all"
    return re.sub(r"[^a-z0-9]+", "_", matcher.lower()).strip("_")


def family_variants(zones, family):
    """Every rule of one family: (record, expr, labels), unfiltered first, then by filter and zone."""
    record, template, filters = family
    out = []
    for f in filters:
        for z in [None] + [f"z{i}" for i in range(zones)]:
            matchers = [m for m in (f'zone="{z}"' if z else None, f) if m]
            sel = ",".join(matchers)
            # No empty `{}` (valid PromQL, but not how people write an unfiltered selector).
            expr = template.format(S=sel, C="," if sel else "").replace("{}", "")
            out.append((record, expr, {"zone_filter": z or "all", "filter": slug(f)}))
    return out


def gen_rules(n, zones):
    """N distinct recording rules, families taken in turn (so every group mixes them), in groups of
    GROUP_SIZES. Deterministic: a function of (n, zones) only."""
    pools = [family_variants(zones, f) for f in FAMILIES]
    rules = []
    i = 0
    while len(rules) < n:
        if not any(pools):
            raise ValueError(f"only {len(rules)} distinct rules can be generated with {zones} zones")
        p = pools[i % len(pools)]
        if p:
            rules.append(p.pop(0))
        i += 1
    keys = {(r, e, tuple(sorted(l.items()))) for r, e, l in rules}
    assert len(keys) == len(rules)
    assert len({(r, tuple(sorted(l.items()))) for r, _, l in rules}) == len(rules), "recorded series collide"
    groups = []
    k = 0
    while k < len(rules):
        size = GROUP_SIZES[len(groups) % len(GROUP_SIZES)]
        groups.append((f"bench-{len(groups):02d}", rules[k:k + size]))
        k += size
    return groups


def rules_yaml(groups):
    def q(s):
        return "'" + s.replace("'", "''") + "'"

    lines = ["groups:"]
    for name, rules in groups:
        lines += [f"  - name: {name}", "    rules:"]
        for record, expr, labels in rules:
            lines += [f"      - record: {record}", f"        expr: {q(expr)}", "        labels:"]
            lines += [f"          {k}: {q(v)}" for k, v in sorted(labels.items())]
    return "\n".join(lines) + "\n"


def check_rules(groups):
    """The correctness probes: per family, its unfiltered rule (all targets) and its first rule filtered
    by zone (and by another label where the family has such rules)."""
    flat = [r for _, rs in groups for r in rs]
    probes = []
    for record in dict.fromkeys(r for r, _, _ in flat):
        mine = [r for r in flat if r[0] == record]
        unfiltered = [r for r in mine if r[2]["zone_filter"] == "all" and r[2]["filter"] == "all"]
        both = [r for r in mine if r[2]["zone_filter"] != "all" and r[2]["filter"] != "all"]
        zoned = [r for r in mine if r[2]["zone_filter"] != "all"]
        probes += unfiltered[:1] + (both or zoned)[:1]
    return probes


def write_config(path, targets, base_port, interval, zones, rule_file):
    """One job; targets split over `zones` static groups, each with a `zone` label."""
    lines = ["global:", f"  scrape_interval: {interval}s", f"  scrape_timeout: {min(10, interval)}s",
             f"  evaluation_interval: {interval}s"]
    if rule_file:
        lines += ["rule_files:", f"  - {rule_file}"]
    lines += ["scrape_configs:", "  - job_name: sim", "    static_configs:"]
    for z in range(zones):
        lines += ["      - labels:", f"          zone: z{z}", "        targets:"]
        lines += [f"          - 127.0.0.1:{base_port + i}" for i in range(targets) if i % zones == z]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


# ---------------------------------------------------------------- /metrics

METRIC_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)')
GROUP_LABEL = re.compile(r'rule_group="([^"]*)"')
PER_GROUP = ("prometheus_rule_group_last_duration_seconds", "prometheus_rule_group_last_evaluation_timestamp_seconds",
             "prometheus_rule_group_last_evaluation_samples", "prometheus_rule_group_iterations_total",
             "prometheus_rule_group_iterations_missed_total", "prometheus_rule_evaluation_failures_total",
             "prometheus_rule_evaluations_total", "prometheus_rule_group_rules")
TOTALS = ("prometheus_rule_group_duration_seconds_sum", "prometheus_rule_group_duration_seconds_count",
          "prometheus_rule_evaluation_duration_seconds_sum", "prometheus_rule_evaluation_duration_seconds_count")


def parse_rule_metrics(text):
    """{metric: {group: value}} for the per-group metrics, {metric: value} for the totals."""
    per, tot = {m: {} for m in PER_GROUP}, {}
    for line in text.splitlines():
        if not line.startswith("prometheus_rule"):
            continue
        m = METRIC_LINE.match(line)
        if not m:
            continue
        name, labels, value = m.groups()
        try:
            v = float(value)
        except ValueError:
            continue
        if name in per:
            g = GROUP_LABEL.search(labels or "")
            if g:
                per[name][g.group(1)] = v
        elif name in TOTALS and not labels:
            tot[name] = v
    return per, tot


def rules_loaded(base):
    """Rules the server reports loaded: /api/v1/rules, else the sum of prometheus_rule_group_rules."""
    try:
        doc, _ = sc.api(base, "/api/v1/rules")
        if doc.get("status") == "success":
            return sum(len(g.get("rules", [])) for g in doc["data"]["groups"])
    except (OSError, KeyError, TypeError, ValueError):
        pass
    try:
        _, body, _ = sc.http_get(base + "/metrics", timeout=10)
        per, _ = parse_rule_metrics(body.decode("utf-8", "replace"))
        return int(sum(per["prometheus_rule_group_rules"].values()))
    except OSError:
        return 0


# ---------------------------------------------------------------- correctness probes


def fnum(s):
    return float(s)  # Python parses "NaN", "+Inf", "-Inf"


def same(a, b):
    if math.isnan(a) and math.isnan(b):
        return True
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b)) + 1e-12


def label_key(metric, drop):
    return tuple(sorted((k, v) for k, v in metric.items() if k not in drop))


def recorded_samples(base, record, labels, at):
    """The newest recorded sample of every series of one rule: (ts, {labels: value})."""
    sel = record + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
    doc, _ = sc.api(base, "/api/v1/query", query=f"{sel}[2m]", time=f"{at:.3f}")
    if doc.get("status") != "success":
        return None, {}, doc.get("error")
    newest = {}
    for s in doc["data"]["result"]:
        for ts, v in s["values"]:
            newest.setdefault(float(ts), {})[label_key(s["metric"], {"__name__", *labels})] = fnum(v)
    if not newest:
        return None, {}, "no recorded sample"
    ts = max(newest)
    return ts, newest[ts], None


def evaluate(base, expr, ts):
    doc, _ = sc.api(base, "/api/v1/query", query=expr, time=f"{ts:.3f}")
    if doc.get("status") != "success":
        return None, doc.get("error")
    res = doc["data"]["result"]
    if doc["data"]["resultType"] != "vector":
        return None, f"result type {doc['data']['resultType']}"
    return {label_key(s["metric"], {"__name__"}): fnum(s["value"][1]) for s in res}, None


def compare(recorded, evaluated):
    """(agree, detail): same label sets, each value within rounding."""
    if evaluated is None:
        return False, "not evaluated"
    if set(recorded) != set(evaluated):
        return False, f"label sets differ: recorded {len(recorded)}, evaluated {len(evaluated)}"
    bad = [(k, recorded[k], evaluated[k]) for k in recorded if not same(recorded[k], evaluated[k])]
    if bad:
        k, a, b = bad[0]
        return False, f"{len(bad)} values differ, e.g. {dict(k)}: {a!r} vs {b!r}"
    return True, f"{len(recorded)} series equal"


def enc(series):
    return {json.dumps(dict(k)): v for k, v in series.items()}


def dec(series):
    return {tuple(tuple(p) for p in sorted(json.loads(k).items())): v for k, v in series.items()}


def probe_self(base, probes, at):
    """Per probe: the newest recorded sample (ts, R) and the expression evaluated at ts by the same
    server now (S). R == S unless a scrape stamped before ts was committed after the rule ran (a slow
    scrape on a loaded machine): the rule saw less data than the later query."""
    out = []
    for record, expr, labels in probes:
        ts, rec, err = recorded_samples(base, record, labels, at)
        item = {"record": record, "labels": labels, "expr": expr, "ts": ts, "series": len(rec),
                "recorded": enc(rec), "self_eval": None}
        if ts is None:
            item.update(self_agree=False, self_detail=str(err))
        else:
            ev, err = evaluate(base, expr, ts)
            ok, detail = compare(rec, ev) if ev is not None else (False, str(err))
            item.update(self_agree=ok, self_detail=detail, self_eval=enc(ev) if ev is not None else None)
        out.append(item)
    return out


def probe_cross(base, probes):
    """The other engine's evaluation at ts (O) on a copy of the data: O == S is the strict check (same
    stored samples, same expression, same time); O == R compares with what was recorded."""
    for item in probes:
        if item["ts"] is None or item["self_eval"] is None:
            item.update(cross_agree=False, cross_detail="no recorded sample or no evaluation",
                        cross_recorded_agree=False, cross_recorded_detail="—")
            continue
        ev, err = evaluate(base, item["expr"], item["ts"])
        ok, detail = compare(dec(item["self_eval"]), ev) if ev is not None else (False, str(err))
        ok_r, detail_r = compare(dec(item["recorded"]), ev) if ev is not None else (False, str(err))
        item.update(cross_agree=ok, cross_detail=detail, cross_recorded_agree=ok_r, cross_recorded_detail=detail_r)


# ---------------------------------------------------------------- one system


def server_argv(system, args, db, config, port):
    if system == "prometheus":
        return [args.prometheus, f"--config.file={config}", f"--storage.tsdb.path={db}",
                f"--web.listen-address=127.0.0.1:{port}"]
    return [args.tsdbctl, "serve", "--db", db, "--config", config, "--listen", f"127.0.0.1:{port}"]


def copy_db(src, dst):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("lock"))


def cross_check(system, args, children, workdir, db, probes):
    """The other engine evaluates the probes on a copy of `system`'s data directory."""
    other = "tsdbctl" if system == "prometheus" else "prometheus"
    copy = os.path.join(workdir, f"{system}-data-copy")
    shutil.rmtree(copy, ignore_errors=True)
    copy_db(db, copy)
    config = os.path.join(workdir, "empty.yml")
    with open(config, "w") as f:
        f.write("global:\n  scrape_interval: 15s\n")
    port = sc.free_port()
    base = f"http://127.0.0.1:{port}"
    argv = server_argv(other, args, copy, config, port)
    log(f"cross-check: {other} on a copy of {system}'s data: {' '.join(argv)}")
    proc = children.start(argv, os.path.join(args.out, f"rules-crosscheck-{other}-on-{system}.log"), cwd=workdir)
    try:
        sc.wait_ready(base, proc, 300)
        probe_cross(base, probes)
    finally:
        children.stop(proc)
        shutil.rmtree(copy, ignore_errors=True)
    return other


def measure(system, args, children, sim, groups, workdir):
    n_rules = sum(len(r) for _, r in groups)
    port = sc.free_port()
    base = f"http://127.0.0.1:{port}"
    db = os.path.join(workdir, f"{system}-data")
    shutil.rmtree(db, ignore_errors=True)
    os.makedirs(db)
    config = os.path.join(workdir, "prometheus.yml")
    rule_file = os.path.join(workdir, RULE_FILE_NAME)
    with_rules = lambda: write_config(config, args.targets, args.base_port, args.interval, args.zones, rule_file)  # noqa: E731
    if args.rules_at_start:
        with_rules()
    else:
        write_config(config, args.targets, args.base_port, args.interval, args.zones, None)
    argv = server_argv(system, args, db, config, port)
    log(f"{system}: {' '.join(argv)}")
    proc = children.start(argv, os.path.join(args.out, f"rules-{system}.log"), cwd=workdir)
    t0 = time.time()
    ready_s = sc.wait_ready(base, proc, 120)
    log(f"{system}: ready after {ready_s:.1f} s (pid {proc.pid})")

    samples = []
    stop = threading.Event()

    def sampler():
        while not stop.is_set():
            try:
                mem = sc.proc_mem_kb(proc.pid)
                s = {"t": time.time() - t0, "cpu_s": sc.proc_cpu_seconds(proc.pid),
                     "sim_cpu_s": sc.proc_cpu_seconds(sim.pid), "rss_kb": mem.get("VmRSS"),
                     "hwm_kb": mem.get("VmHWM"), "load1": sc.loadavg1()}
            except (OSError, IndexError, ValueError):
                stop.wait(args.sample_every)
                continue  # the process is exiting
            try:
                status, body, secs = sc.http_get(base + "/metrics", timeout=10)
                per, tot = parse_rule_metrics(body.decode("utf-8", "replace"))
                s.update(rules=per, totals=tot, metrics_s=secs)
            except OSError as e:
                s["metrics_error"] = str(e)
            samples.append(s)
            stop.wait(args.sample_every)

    th = threading.Thread(target=sampler, daemon=True)
    th.start()

    def sleep_until(t):
        while time.time() - t0 < t:
            if proc.poll() is not None:
                raise RuntimeError(f"{system} exited with {proc.returncode}")
            time.sleep(min(1.0, max(0.0, t - (time.time() - t0))))

    result = {"system": system, "argv": argv, "ready_s": ready_s, "rules": n_rules, "groups": len(groups)}
    if args.rules_at_start:
        t_loaded = 0.0
    else:
        sleep_until(args.warmup)
        result["count_up_eq_1_end_of_warmup"] = sc.scalar(base, "count(up == 1)")
        with_rules()
        t_reload = time.time() - t0
        proc.send_signal(signal.SIGHUP)
        while True:
            loaded = rules_loaded(base)
            if loaded >= n_rules:
                break
            if time.time() - t0 > t_reload + 120:
                raise RuntimeError(f"{system}: {loaded} of {n_rules} rules loaded 120 s after SIGHUP")
            time.sleep(0.5)
        t_loaded = time.time() - t0
        log(f"{system}: SIGHUP at {t_reload:.0f} s, {loaded} rules loaded after {t_loaded - t_reload:.1f} s "
            f"(count(up == 1) = {result['count_up_eq_1_end_of_warmup']})")
    m0 = t_loaded + args.settle
    m1 = m0 + args.measure
    sleep_until(m1)
    t_probe = time.time()
    probes = probe_self(base, check_rules(groups), t_probe)
    checks = {
        "count_up_eq_1": sc.scalar(base, "count(up == 1)"),
        "sum_scrape_samples_scraped": sc.scalar(base, "sum(scrape_samples_scraped)"),
        "count_scraped_series": sc.scalar(base, 'count({__name__=~"[^:]+"})'),
        "count_recorded_series": sc.scalar(base, 'count({__name__=~".+:.+"})'),
        "count_recorded_names": sc.scalar(base, 'count(count by (__name__) ({__name__=~".+:.+"}))'),
        "scrapes_per_target_over_measure": sc.scalar(base, f"avg(count_over_time(up[{int(args.measure)}s]))"),
        "expected_scrapes_per_target": args.measure / args.interval,
    }
    stop.set()
    th.join()
    final_mem = sc.proc_mem_kb(proc.pid)
    shutdown_s = children.stop(proc)
    log(f"{system}: stopped in {shutdown_s:.1f} s; checks {checks}")
    log(f"{system}: self-check " + ", ".join(f"{p['record']}[{p['labels']['zone_filter']}]: {p['self_detail']}"
                                            for p in probes))
    try:
        other = cross_check(system, args, children, workdir, db, probes)
        log(f"{system}: cross-check by {other}: " + ", ".join(
            f"{p['record']}[{p['labels']['zone_filter']}]: {p['cross_detail']}" for p in probes))
    except (RuntimeError, OSError) as e:
        other = None
        log(f"{system}: cross-check failed: {e}")
        for p in probes:
            p.setdefault("cross_agree", False)
            p.setdefault("cross_detail", f"cross-check failed: {e}")
            p.setdefault("cross_recorded_agree", False)
            p.setdefault("cross_recorded_detail", "—")
    if not args.keep_data:
        shutil.rmtree(db, ignore_errors=True)

    def at(t):
        return min(samples, key=lambda s: abs(s["t"] - t))

    def per_min(a, b, key="cpu_s"):
        return 60 * (b[key] - a[key]) / (b["t"] - a["t"])

    win = [s for s in samples if m0 <= s["t"] <= m1 and "rules" in s]
    a, b = at(m0), at(m1)
    # Distinct iterations per group in the window: (group, eval timestamp) -> duration.
    iters = {}
    for s in win:
        r = s["rules"]
        for g, d in r["prometheus_rule_group_last_duration_seconds"].items():
            ts = r["prometheus_rule_group_last_evaluation_timestamp_seconds"].get(g)
            if ts is not None and ts > 0 and t0 + m0 - args.interval <= ts <= t0 + m1:
                iters.setdefault(g, {})[ts] = d
    per_group_mean = {g: statistics.mean(v.values()) for g, v in iters.items()}
    sums = [sum(s["rules"]["prometheus_rule_group_last_duration_seconds"].values()) for s in win]

    def delta(metric, group_sum=True):
        ra, rb = a.get("rules"), b.get("rules")
        if not ra or not rb:
            return None
        if group_sum:
            va, vb = ra.get(metric, {}), rb.get(metric, {})
            if not vb:
                return None
            return sum(vb.values()) - sum(va.get(g, 0.0) for g in vb)
        ta, tb = a.get("totals", {}), b.get("totals", {})
        if metric not in tb:
            return None
        return tb[metric] - ta.get(metric, 0.0)

    d_sum = delta("prometheus_rule_group_duration_seconds_sum", False)
    d_count = delta("prometheus_rule_group_duration_seconds_count", False)
    last = b.get("rules", {})
    result.update({
        "phases_s": {"warmup": 0 if args.rules_at_start else args.warmup, "baseline_from": args.baseline_from,
                     "loaded_at": t_loaded, "measure_from": m0, "measure_to": m1},
        "eval_s_per_iteration": sum(per_group_mean.values()) if per_group_mean else None,
        "eval_s_per_iteration_sampled": statistics.mean(sums) if sums else None,
        "eval_s_per_iteration_summary": (d_sum / (d_count / len(groups))) if d_sum is not None and d_count else None,
        "groups_seen": len(per_group_mean),
        "iterations_seen_per_group": statistics.mean(len(v) for v in iters.values()) if iters else None,
        "slowest_group_s": max(per_group_mean.values()) if per_group_mean else None,
        "iterations_total_delta": delta("prometheus_rule_group_iterations_total"),
        "iterations_missed_delta": delta("prometheus_rule_group_iterations_missed_total"),
        "evaluation_failures_delta": delta("prometheus_rule_evaluation_failures_total"),
        "samples_per_iteration": sum(last.get("prometheus_rule_group_last_evaluation_samples", {}).values()) or None,
        "cpu_s_per_min_rules": per_min(a, b),
        "cpu_s_per_min_scrape_only": None if args.rules_at_start else per_min(at(args.baseline_from), at(args.warmup)),
        "rss_mb_end_of_warmup": None if args.rules_at_start else at(args.warmup)["rss_kb"] / 1024,
        "rss_mb_median_measure": statistics.median(s["rss_kb"] for s in win) / 1024 if win else None,
        "rss_mb_max_measure": max(s["rss_kb"] for s in win) / 1024 if win else None,
        "hwm_mb": final_mem.get("VmHWM", 0) / 1024,
        "load1_mean_measure": statistics.mean(s["load1"] for s in win) if win else None,
        "load1_mean_baseline": None if args.rules_at_start else statistics.mean(
            s["load1"] for s in samples if args.baseline_from <= s["t"] <= args.warmup),
        "sim_cpu_s_per_min": per_min(samples[0], samples[-1], "sim_cpu_s"),
        "shutdown_s": shutdown_s,
        "checks": checks,
        "probes": probes,
        "probes_self_agree": sum(p["self_agree"] for p in probes),
        "probes_cross_agree": sum(p.get("cross_agree", False) for p in probes),
        "probes_cross_recorded_agree": sum(p.get("cross_recorded_agree", False) for p in probes),
        "probes_total": len(probes),
        "cross_checked_by": other,
        "per_group_mean_s": per_group_mean,
        "samples": samples,
    })
    compact(result)
    if result["cpu_s_per_min_scrape_only"] is not None:
        result["cpu_s_per_min_rules_minus_scrape"] = result["cpu_s_per_min_rules"] - result["cpu_s_per_min_scrape_only"]
        # CPU of one round of all rules: groups overlap on the cores, so this is the machine-independent
        # counterpart of the summed wall durations.
        result["rules_cpu_s_per_iteration"] = result["cpu_s_per_min_rules_minus_scrape"] * args.interval / 60
    return result


def compact(result):
    """Keeps the result file small: per sample, the rule metrics summed over the groups; per group
    only its mean iteration (under the group's name, without the temporary directory)."""
    for s in result["samples"]:
        per = s.pop("rules", None)
        if per:
            s["rules_sum"] = {m: sum(v.values()) for m, v in per.items()}
    result["per_group_mean_s"] = {g.rsplit(";", 1)[-1]: v for g, v in result["per_group_mean_s"].items()}


# ---------------------------------------------------------------- report


def report(out):
    runs = {}
    for name in ("prometheus", "tsdbctl"):
        p = os.path.join(out, f"rules-{name}.json")
        if os.path.exists(p):
            with open(p) as f:
                runs[name] = json.load(f)
    if not runs:
        return "no results\n"
    p, t = runs.get("prometheus"), runs.get("tsdbctl")
    fmt = sc.fmt

    def row(label, key, digits=3):
        pv = p.get(key) if p else None
        tv = t.get(key) if t else None
        ratio = f"{tv / pv:.3f}" if isinstance(pv, (int, float)) and isinstance(tv, (int, float)) and pv else "—"
        return f"| {label} | {fmt(pv, digits)} | {fmt(tv, digits)} | {ratio} |"

    r0 = p or t
    lines = [
        f"{r0['rules']} recording rules in {r0['groups']} groups, {r0['setup']['targets']} targets x "
        f"{r0['setup']['series']} series, scrape and evaluation interval {r0['setup']['interval']} s.",
        "",
        "| | Prometheus 2.42 | tsdbctl serve | tsdbctl / Prometheus |",
        "|---|---:|---:|---:|",
        row("**Evaluation time per iteration, s** (sum over groups of the mean `last_duration`)",
            "eval_s_per_iteration", 4),
        row("same, mean of sampled sum(`last_duration`)", "eval_s_per_iteration_sampled", 4),
        row("same, from `prometheus_rule_group_duration_seconds` sum/count", "eval_s_per_iteration_summary", 4),
        row("slowest group, mean s", "slowest_group_s", 4),
        row("**CPU seconds per minute, scraping + rules**", "cpu_s_per_min_rules", 2),
        row("CPU seconds per minute, scraping only (warmup tail)", "cpu_s_per_min_scrape_only", 2),
        row("CPU seconds per minute, difference (the rules)", "cpu_s_per_min_rules_minus_scrape", 2),
        row("rules' CPU seconds per iteration (difference x interval / 60)", "rules_cpu_s_per_iteration", 3),
        row("RSS MiB, end of warmup (no rules)", "rss_mb_end_of_warmup", 0),
        row("RSS MiB, median while evaluating", "rss_mb_median_measure", 0),
        row("RSS MiB, highest while evaluating", "rss_mb_max_measure", 0),
        row("Peak RSS (VmHWM) MiB", "hwm_mb", 0),
        row("samples recorded per iteration", "samples_per_iteration", 0),
        row("iterations in the window (all groups)", "iterations_total_delta", 0),
        row("missed iterations in the window", "iterations_missed_delta", 0),
        row("evaluation failures in the window", "evaluation_failures_delta", 0),
        row("load average (1 min), mean while measuring", "load1_mean_measure", 2),
        row("load average (1 min), mean during the baseline", "load1_mean_baseline", 2),
        row("simulator CPU s per minute", "sim_cpu_s_per_min", 3),
    ]
    lines += ["", "Checks at the end of each run:", "", "| check | Prometheus 2.42 | tsdbctl serve |", "|---|---:|---:|"]
    for k in r0["checks"]:
        lines.append(f"| {k} | {fmt((p or {}).get('checks', {}).get(k), 3)} | {fmt((t or {}).get('checks', {}).get(k), 3)} |")
    lines += ["", "Correctness probes: per probe, the newest recorded sample of a rule (R, at ts), the rule's "
              "expression evaluated at ts afterwards by the same server (S) and by the other engine on a copy "
              "of the data directory (O). O = S is the strict check (same samples, same time); R differs from "
              "S/O only if a scrape stamped before ts was committed after the rule ran. Agreeing probes:", "",
              "| data of | O = S (other engine) | R = S | R = O |", "|---|---:|---:|---:|"]
    for name, r in runs.items():
        lines.append(f"| {name} (O: {r.get('cross_checked_by')}) | {r['probes_cross_agree']} / {r['probes_total']} | "
                     f"{r['probes_self_agree']} / {r['probes_total']} | "
                     f"{r.get('probes_cross_recorded_agree', '—')} / {r['probes_total']} |")
        for pr in r["probes"]:
            if not pr["self_agree"] or not pr.get("cross_agree"):
                lines.append(f"|  `{pr['record']}` {pr['labels']} | {pr.get('cross_detail')} | {pr['self_detail']} | "
                             f"{pr.get('cross_recorded_detail')} |")
    for name, r in runs.items():
        lines.append("")
        lines.append(f"{name}: {r['date_utc']}, `{' '.join(r['argv'])}`")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- main


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="results directory (rules-<system>.json, rules-report.md)")
    ap.add_argument("--systems", default="prometheus,tsdbctl")
    ap.add_argument("--rules", type=int, default=1000)
    ap.add_argument("--zones", type=int, default=10, help="static groups of targets, label zone=z0..")
    ap.add_argument("--targets", type=int, default=100)
    ap.add_argument("--series", type=int, default=100)
    ap.add_argument("--interval", type=int, default=15)
    ap.add_argument("--warmup", type=float, default=330, help="scrape-only seconds before the rules are loaded")
    ap.add_argument("--baseline-from", type=float, default=90, help="start of the scrape-only CPU baseline")
    ap.add_argument("--settle", type=float, default=45)
    ap.add_argument("--measure", type=float, default=300)
    ap.add_argument("--rules-at-start", action="store_true",
                    help="load the rules from the start instead of by SIGHUP after the warmup (no baseline)")
    ap.add_argument("--sample-every", type=float, default=5)
    ap.add_argument("--pause", type=float, default=15, help="seconds between systems")
    ap.add_argument("--sim", default=os.path.join(root, "target/release/examples/scrape_sim"))
    ap.add_argument("--tsdbctl", default=os.path.join(root, "target/release/tsdbctl"))
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "prometheus")
    ap.add_argument("--keep-data", action="store_true")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--print-rules", action="store_true")
    args = ap.parse_args()
    groups = gen_rules(args.rules, args.zones)
    if args.print_rules:
        sys.stdout.write(rules_yaml(groups))
        return
    if not args.out:
        ap.error("--out is required")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.makedirs(args.out, exist_ok=True)
    if args.report_only:
        md = report(args.out)
        with open(os.path.join(args.out, "rules-report.md"), "w") as f:
            f.write(md)
        print(md)
        return

    children = sc.Children()
    workdir = tempfile.mkdtemp(prefix="rules-compare-")
    try:
        rule_file = os.path.join(workdir, RULE_FILE_NAME)
        with open(rule_file, "w") as f:
            f.write(rules_yaml(groups))
        promtool = shutil.which("promtool")
        if promtool:
            r = subprocess.run([promtool, "check", "rules", rule_file], capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"promtool check rules: {r.stdout}{r.stderr}")
            log(f"promtool check rules: {r.stdout.strip().splitlines()[-1]}")
        args.base_port = sc.free_port_range(args.targets)
        sim = children.start([args.sim, "--targets", str(args.targets), "--series", str(args.series),
                              "--base-port", str(args.base_port), "--interval", str(args.interval)],
                             os.path.join(args.out, "rules-scrape_sim.log"))
        for i in (0, args.targets - 1):
            for _ in range(100):
                try:
                    status, body, _ = sc.http_get(f"http://127.0.0.1:{args.base_port + i}/metrics", timeout=5)
                    break
                except OSError:
                    time.sleep(0.2)
            else:
                raise RuntimeError(f"simulator target {i} does not answer")
            lines = [ln for ln in body.decode().splitlines() if ln and not ln.startswith("#")]
            assert status == 200 and len(lines) == args.series, (status, len(lines))
        log(f"simulator: {args.targets} targets x {args.series} series on ports {args.base_port}.."
            f"{args.base_port + args.targets - 1} (pid {sim.pid}); {args.rules} rules in {len(groups)} groups; "
            f"load average {open('/proc/loadavg').read().split()[:3]}")

        for n, system in enumerate(s.strip() for s in args.systems.split(",")):
            if n:
                time.sleep(args.pause)
            res = measure(system, args, children, sim, groups, workdir)
            res["setup"] = {k: getattr(args, k) for k in ("rules", "zones", "targets", "series", "interval", "warmup",
                                                          "baseline_from", "settle", "measure", "rules_at_start",
                                                          "sample_every")}
            res["date_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            res["loadavg_after"] = open("/proc/loadavg").read().split()[:3]
            with open(os.path.join(args.out, f"rules-{system}.json"), "w") as f:
                json.dump(res, f, indent=1)
            log(f"{system}: eval {fmt_s(res['eval_s_per_iteration'])} s/iteration, "
                f"{fmt_s(res['cpu_s_per_min_rules'])} CPU s/min with rules, "
                f"{fmt_s(res['cpu_s_per_min_scrape_only'])} scrape only, load {res['load1_mean_measure']:.2f}")
        children.stop(sim)
    finally:
        children.stop_all()
        if not args.keep_data:
            shutil.rmtree(workdir, ignore_errors=True)
    md = report(args.out)
    with open(os.path.join(args.out, "rules-report.md"), "w") as f:
        f.write(md)
    print(md)


def fmt_s(v):
    return "—" if v is None else f"{v:.3f}"


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
