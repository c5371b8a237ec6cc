//! A deterministic scrape-target simulator for issue 5's figure (1,000 targets x 1,000 series at a
//! 15 s interval, scraped by `tsdbctl serve` and by Prometheus 2.42):
//!
//! ```text
//! cargo build --release --example scrape_sim
//! target/release/examples/scrape_sim [--targets 1000] [--series 1000] [--base-port 20000]
//!                                    [--interval 15] [--threads 1] [--openmetrics]
//! ```
//!
//! Serves `--targets` exporters on consecutive ports of 127.0.0.1 starting at `--base-port`, each
//! answering `GET /metrics` with exactly `--series` samples in text format 0.0.4 (or OpenMetrics
//! 1.0 when `--openmetrics` is given and the `Accept` header asks for it, as client_golang does when
//! its OpenMetrics option is on; off by default, like client_golang, so that every scraper parses the
//! same format).
//!
//! The mix imitates an instrumented HTTP service: process and Go runtime metrics, a build-info gauge,
//! `http_requests_total{handler,method,code}` counters (30% of the series),
//! `http_request_duration_seconds` histograms per handler and method (12 buckets, `_sum`, `_count`:
//! 35%), and gauges with `queue`/`shard` or `pool`/`worker` labels for the rest. Label sets are the
//! same on every target (as replicas of one service), the values differ by target.
//!
//! Values are a pure function of (target, series, step), `step = (unix time - 2026-01-01) /
//! --interval`: they change once per interval, so every scrape of a 15 s loop sees new values, and
//! two scrapers (or two runs) see the same values at the same time. Counters and histogram buckets
//! increase at every step by a per-series rate plus a bounded jitter (so they are monotonic, never
//! reset, and compress like real counters rather than like constants); the buckets of a histogram are
//! cumulative; gauges jump within a per-series range with three decimals.
//!
//! The simulator must not disturb the measurement on a 2-core machine: the series text of a body is
//! rendered once at start (shared by all targets) and only the numbers are written per request, on a
//! single-threaded tokio runtime by default. It prints its own CPU seconds (utime + stime from
//! `/proc/self/stat`), requests and bytes served every minute and on SIGINT/SIGTERM.
//!
//! Each target needs a listener and, while scraped, a keep-alive connection: raise `ulimit -n` above
//! 2 x targets + 100 (the program checks `RLIMIT_NOFILE` through `/proc/self/limits` and refuses to
//! start with too low a limit).

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use bytes::Bytes;
use clap::Parser;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Unix time of 2026-01-01T00:00:00Z: values count steps from here, so they do not depend on when
/// the simulator started and stay in a realistic range (counters of ~10^6..10^8).
const EPOCH_UNIX_SECS: u64 = 1_767_225_600;

/// Upper bounds of the request-duration histogram (client_golang's `DefBuckets`) and `+Inf`.
const BUCKETS: [&str; 12] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
];
/// Series of one histogram: its buckets, `_sum` and `_count`.
const HISTOGRAM_SERIES: usize = BUCKETS.len() + 2;

const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];
const CODES: [&str; 5] = ["200", "201", "400", "404", "500"];

const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const CONTENT_TYPE_OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Parser, Debug, Clone)]
#[command(about = "Serves N deterministic /metrics targets on consecutive ports of 127.0.0.1")]
struct Args {
    /// Number of targets (one listener each).
    #[arg(long, default_value_t = 1000)]
    targets: usize,
    /// Samples per scrape of each target.
    #[arg(long, default_value_t = 1000)]
    series: usize,
    /// Port of the first target; target i listens on base-port + i.
    #[arg(long, default_value_t = 20000)]
    base_port: u16,
    /// Seconds per value step: values change once per interval.
    #[arg(long, default_value_t = 15)]
    interval: u64,
    /// Tokio worker threads (1: a current-thread runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Answer in OpenMetrics when the Accept header prefers it.
    #[arg(long)]
    openmetrics: bool,
    /// Print one target's body (target 0 unless given) for the current step and exit.
    #[arg(long)]
    print: Option<Option<usize>>,
}

/// How the value written into one slot of the template is computed.
#[derive(Clone, Copy, Debug)]
enum Value {
    /// Monotonic integer: `step * rate + jitter`, `jitter < rate`.
    Counter { rate: u64, seed: u64 },
    /// `base + jitter`, `jitter < span`: thousandths printed with three decimals if `milli`, else
    /// an integer (most real gauges — bytes, descriptors, queue lengths — are integers, and they
    /// compress differently from fractions).
    Gauge {
        base: u64,
        span: u64,
        seed: u64,
        milli: bool,
    },
    /// A histogram bucket: the running bucket sum (`first` restarts it) plus this bucket's own
    /// counter, so buckets are cumulative and each increases with the step.
    Bucket { first: bool, rate: u64, seed: u64 },
    /// The histogram's `_sum`: the running count times a mean of `mean` thousandths, plus a jitter
    /// below `mean` (monotonic because the count grows by at least one per step).
    Sum { mean: u64, seed: u64 },
    /// The histogram's `_count`: the running count (the `+Inf` bucket).
    Count,
    /// A constant integer.
    Const(u64),
}

/// One slot of the template: the text before it ends at `text_end` in [`Template::text`].
#[derive(Clone, Copy, Debug)]
struct Slot {
    text_end: usize,
    value: Value,
}

/// A body with holes: the series text shared by all targets, and the slots where numbers go.
struct Template {
    text: String,
    slots: Vec<Slot>,
    /// Text after the last slot (the final newline, and `# EOF` in OpenMetrics).
    tail_start: usize,
}

/// splitmix64: a cheap, well-mixed hash for the deterministic jitter.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Builds the template text. `om` selects OpenMetrics (counter families without `_total` in the
/// metadata lines, `# EOF` at the end).
struct Builder {
    om: bool,
    text: String,
    slots: Vec<Slot>,
    left: usize,
    seed: u64,
    /// A sample line waits for its value (written at render time) and its newline.
    line_open: bool,
}

impl Builder {
    fn new(series: usize, om: bool) -> Builder {
        Builder {
            om,
            text: String::with_capacity(series * 96),
            slots: Vec::new(),
            left: series,
            seed: 0,
            line_open: false,
        }
    }

    fn next_seed(&mut self) -> u64 {
        self.seed += 1;
        mix(self.seed)
    }

    fn close_line(&mut self) {
        if std::mem::take(&mut self.line_open) {
            self.text.push('\n');
        }
    }

    /// `# HELP` and `# TYPE` lines; `name` is the sample name of counters (with `_total`).
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let meta = if self.om && kind == "counter" {
            name.trim_end_matches("_total")
        } else {
            name
        };
        self.close_line();
        let _ = writeln!(self.text, "# HELP {meta} {help}");
        let _ = writeln!(self.text, "# TYPE {meta} {kind}");
    }

    /// One sample line; false (and nothing written) once the series budget is spent.
    fn sample(&mut self, series: &str, value: Value) -> bool {
        if self.left == 0 {
            return false;
        }
        self.left -= 1;
        self.close_line();
        self.line_open = true;
        self.text.push_str(series);
        self.text.push(' ');
        self.slots.push(Slot {
            text_end: self.text.len(),
            value,
        });
        true
    }

    fn counter(&mut self, series: &str, max_rate: u64) -> bool {
        let seed = self.next_seed();
        let rate = 1 + seed % max_rate;
        self.sample(series, Value::Counter { rate, seed })
    }

    fn gauge(&mut self, series: &str, base: u64, span: u64, milli: bool) -> bool {
        let seed = self.next_seed();
        let span = span.max(1);
        self.sample(
            series,
            Value::Gauge {
                base,
                span,
                seed,
                milli,
            },
        )
    }

    fn finish(mut self) -> Template {
        let tail_start = self.text.len();
        self.close_line();
        if self.om {
            self.text.push_str("# EOF\n");
        }
        Template {
            text: self.text,
            slots: self.slots,
            tail_start,
        }
    }
}

/// The body layout for `series` samples: fixed process metrics, then 30% counters, 35% histogram
/// series (whole histograms), and gauges for the rest. The text between the metadata lines is
/// attached to the following slot, so a family whose samples are all cut off by the budget still
/// leaves its `# HELP`/`# TYPE` lines — harmless, as in real exporters with empty vectors.
fn build_template(series: usize, om: bool) -> Template {
    let mut b = Builder::new(series, om);
    b.family(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
    );
    b.counter("process_cpu_seconds_total", 3);
    b.family(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
    );
    b.gauge(
        "process_resident_memory_bytes",
        180_000_000,
        40_000_000,
        false,
    );
    b.family(
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
    );
    b.gauge("process_open_fds", 60, 20, false);
    b.family(
        "go_goroutines",
        "gauge",
        "Number of goroutines that currently exist.",
    );
    b.gauge("go_goroutines", 40, 30, false);
    b.family("go_threads", "gauge", "Number of OS threads created.");
    b.sample("go_threads", Value::Const(14));
    b.family(
        "app_build_info",
        "gauge",
        "A metric with a constant '1' value labeled by version and revision.",
    );
    b.sample(
        r#"app_build_info{goversion="go1.20.1",revision="4f9c1a2",version="2.7.1"}"#,
        Value::Const(1),
    );

    let fixed = series.min(6);
    let rest = series - fixed;
    let counters = rest * 30 / 100;
    let histograms = rest * 35 / 100 / HISTOGRAM_SERIES;

    b.family(
        "http_requests_total",
        "counter",
        "Total HTTP requests by handler, method and status code.",
    );
    let per_handler = METHODS.len() * CODES.len();
    for i in 0..counters {
        let (handler, combo) = (i / per_handler, i % per_handler);
        let (method, code) = (METHODS[combo / CODES.len()], CODES[combo % CODES.len()]);
        let series = format!(
            r#"http_requests_total{{code="{code}",handler="/api/v1/resource_{handler}",method="{method}"}}"#
        );
        // 2xx are frequent, errors rare: rates of real services differ by orders of magnitude.
        let max_rate = if code.starts_with('2') { 400 } else { 5 };
        b.counter(&series, max_rate);
    }

    b.family(
        "http_request_duration_seconds",
        "histogram",
        "Latency of HTTP requests by handler and method.",
    );
    for h in 0..histograms {
        let (handler, method) = (h / 2, METHODS[h % 2]);
        let labels = format!(r#"handler="/api/v1/resource_{handler}",method="{method}""#);
        for (i, le) in BUCKETS.iter().enumerate() {
            let seed = b.next_seed();
            // Most observations land in the middle buckets.
            let rate = match i {
                0..=2 => 1 + seed % 3,
                3..=6 => 5 + seed % 60,
                _ => seed % 3,
            };
            let series = format!(r#"http_request_duration_seconds_bucket{{{labels},le="{le}"}}"#);
            b.sample(
                &series,
                Value::Bucket {
                    first: i == 0,
                    rate,
                    seed,
                },
            );
        }
        let seed = b.next_seed();
        let mean = 20 + seed % 200;
        b.sample(
            &format!("http_request_duration_seconds_sum{{{labels}}}"),
            Value::Sum { mean, seed },
        );
        b.sample(
            &format!("http_request_duration_seconds_count{{{labels}}}"),
            Value::Count,
        );
    }

    b.family(
        "app_queue_depth",
        "gauge",
        "Items waiting in a work queue, by queue and shard.",
    );
    let queues = b.left / 2;
    for i in 0..queues {
        let series = format!(
            r#"app_queue_depth{{queue="{}",shard="{}"}}"#,
            ["ingest", "index", "notify", "export"][i % 4],
            i / 4
        );
        b.gauge(&series, 0, 500, false);
    }
    b.family(
        "app_worker_busy_ratio",
        "gauge",
        "Fraction of the last interval a worker was busy.",
    );
    let mut worker = 0;
    while b.left > 0 {
        let series = format!(
            r#"app_worker_busy_ratio{{pool="{}",worker="w{}"}}"#,
            ["io", "cpu", "net"][worker % 3],
            worker
        );
        b.gauge(&series, 0, 1000, true);
        worker += 1;
    }
    b.finish()
}

/// Writes `v` in decimal (no allocation; `fmt` of integers is cheap enough but this avoids the
/// formatter machinery on the one hot loop of the program).
fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Writes `v` thousandths with three decimals.
fn push_milli(out: &mut Vec<u8>, v: u64) {
    push_u64(out, v / 1000);
    let frac = v % 1000;
    out.extend_from_slice(&[
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

impl Template {
    /// Renders the body of `target` at `step` into `out` (cleared first).
    fn render(&self, target: u64, step: u64, out: &mut Vec<u8>) {
        out.clear();
        let bytes = self.text.as_bytes();
        let salt = mix(target ^ 0x5EED).wrapping_add(step.wrapping_mul(0x2545_F491_4F6C_DD1D));
        let mut start = 0;
        let mut running = 0u64;
        for slot in &self.slots {
            out.extend_from_slice(&bytes[start..slot.text_end]);
            start = slot.text_end;
            match slot.value {
                Value::Counter { rate, seed } => {
                    let jitter = mix(seed ^ salt) % rate;
                    push_u64(out, step * rate + jitter + (target % 7) * rate * 1000);
                }
                Value::Gauge {
                    base,
                    span,
                    seed,
                    milli,
                } => {
                    let v = base + mix(seed ^ salt) % span;
                    if milli {
                        push_milli(out, v)
                    } else {
                        push_u64(out, v)
                    }
                }
                Value::Bucket { first, rate, seed } => {
                    if first {
                        running = 0;
                    }
                    if rate > 0 {
                        running += step * rate + mix(seed ^ salt) % rate;
                    }
                    push_u64(out, running);
                }
                Value::Sum { mean, seed } => {
                    push_milli(out, running * mean + mix(seed ^ salt) % mean)
                }
                Value::Count => push_u64(out, running),
                Value::Const(v) => push_u64(out, v),
            }
        }
        out.extend_from_slice(&bytes[start..]);
        debug_assert!(start <= self.tail_start);
    }
}

/// The value step at `now`.
fn step_at(now: SystemTime, interval: u64) -> u64 {
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    secs.saturating_sub(EPOCH_UNIX_SECS) / interval.max(1)
}

/// Whether an Accept header prefers OpenMetrics (its first listed media type, as Prometheus lists
/// them in preference order).
fn wants_openmetrics(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|m| m.trim_start().starts_with("application/openmetrics-text"))
}

/// CPU seconds (utime + stime) of this process, from `/proc/self/stat`.
fn own_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return f64::NAN;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    // `rest` starts at field 3 (state); CLK_TCK is 100 on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

/// The soft open-files limit, from `/proc/self/limits`.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

struct Shared {
    text: Template,
    om: Option<Template>,
    interval: u64,
    requests: AtomicU64,
    bytes: AtomicU64,
}

async fn handle(
    shared: Arc<Shared>,
    target: u64,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    if req.uri().path() != "/metrics" {
        let mut resp = Response::new(Body::from("not found\n"));
        *resp.status_mut() = StatusCode::NOT_FOUND;
        return Ok(resp);
    }
    let accept = req
        .headers()
        .get(hyper::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (template, content_type) = match &shared.om {
        Some(om) if wants_openmetrics(accept) => (om, CONTENT_TYPE_OPENMETRICS),
        _ => (&shared.text, CONTENT_TYPE_TEXT),
    };
    let mut body = Vec::with_capacity(template.text.len() + template.slots.len() * 12);
    template.render(
        target,
        step_at(SystemTime::now(), shared.interval),
        &mut body,
    );
    shared.requests.fetch_add(1, Ordering::Relaxed);
    shared.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
    let mut resp = Response::new(Body::from(Bytes::from(body)));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    Ok(resp)
}

async fn serve_target(listener: TcpListener, shared: Arc<Shared>, target: u64) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and the like: back off instead of spinning.
                eprintln!("scrape_sim: target {target}: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(shared.clone(), target, req));
            // Scrapers keep the connection alive between scrapes; errors are the peer's doing.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn report(shared: &Shared, started: Instant, what: &str) {
    println!(
        "scrape_sim: {what} uptime_s={:.0} requests={} bytes={} cpu_s={:.2}",
        started.elapsed().as_secs_f64(),
        shared.requests.load(Ordering::Relaxed),
        shared.bytes.load(Ordering::Relaxed),
        own_cpu_seconds()
    );
}

async fn run(args: Args) -> Result<(), String> {
    let shared = Arc::new(Shared {
        text: build_template(args.series, false),
        om: args.openmetrics.then(|| build_template(args.series, true)),
        interval: args.interval,
        requests: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
    });
    for i in 0..args.targets {
        let port = u16::try_from(args.base_port as usize + i)
            .map_err(|_| format!("port of target {i} exceeds 65535"))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("bind {addr}: {e}"))?;
        tokio::spawn(serve_target(listener, shared.clone(), i as u64));
    }
    let started = Instant::now();
    println!(
        "scrape_sim: listening targets={} ports={}..{} series={} body_bytes~{} cpu_s={:.2}",
        args.targets,
        args.base_port,
        args.base_port as usize + args.targets - 1,
        args.series,
        shared.text.text.len() + shared.text.slots.len() * 8,
        own_cpu_seconds()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => report(&shared, started, "stats"),
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    report(&shared, started, "exit");
    Ok(())
}

fn main() {
    let args = Args::parse();
    if let Some(target) = args.print {
        let mut out = Vec::new();
        let template = build_template(args.series, args.openmetrics);
        template.render(
            target.unwrap_or(0) as u64,
            step_at(SystemTime::now(), args.interval),
            &mut out,
        );
        // A closed pipe (`| head`) is not an error worth a panic.
        let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), &out);
        return;
    }
    let need = 2 * args.targets as u64 + 100;
    if let Some(limit) = open_files_limit().filter(|&l| l < need) {
        eprintln!("scrape_sim: open-files limit {limit} < {need} needed for {} targets; raise `ulimit -n`", args.targets);
        std::process::exit(2);
    }
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let result = runtime
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(run(args)));
    if let Err(e) = result {
        eprintln!("scrape_sim: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsdb::exposition::{Entry, Format, Parser};

    /// Parses a body with the crate's parser; returns (series text, value) of every sample.
    fn samples(body: &[u8], format: Format) -> Vec<(String, f64)> {
        let mut p = Parser::new(body, format);
        let mut out = Vec::new();
        while let Some(entry) = p.next_entry().unwrap() {
            if let Entry::Sample { series, value, .. } = entry {
                out.push((String::from_utf8(series.to_vec()).unwrap(), value));
            }
        }
        out
    }

    #[test]
    fn body_has_exactly_the_requested_series_and_parses() {
        for series in [1, 5, 6, 7, 50, 1000, 2500] {
            for (om, format) in [(false, Format::Prometheus), (true, Format::OpenMetrics)] {
                let mut out = Vec::new();
                build_template(series, om).render(3, 1000, &mut out);
                let got = samples(&out, format);
                assert_eq!(got.len(), series, "series={series} om={om}");
                let mut names: Vec<&String> = got.iter().map(|(s, _)| s).collect();
                names.sort();
                names.dedup();
                assert_eq!(names.len(), series, "duplicate series for series={series}");
            }
        }
    }

    #[test]
    fn mix_of_1000_is_counters_histograms_and_gauges() {
        let mut out = Vec::new();
        build_template(1000, false).render(0, 10, &mut out);
        let got = samples(&out, Format::Prometheus);
        let count = |prefix: &str| got.iter().filter(|(s, _)| s.starts_with(prefix)).count();
        assert_eq!(count("http_requests_total{"), 298);
        assert_eq!(
            count("http_request_duration_seconds_"),
            24 * HISTOGRAM_SERIES
        );
        assert_eq!(
            count("app_queue_depth{") + count("app_worker_busy_ratio{"),
            1000 - 6 - 298 - 24 * 14
        );
    }

    #[test]
    fn counters_and_buckets_increase_every_step_and_buckets_are_cumulative() {
        let template = build_template(1000, false);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for step in [0u64, 1, 77, 1_000_000] {
            template.render(42, step, &mut a);
            template.render(42, step + 1, &mut b);
            let (sa, sb) = (
                samples(&a, Format::Prometheus),
                samples(&b, Format::Prometheus),
            );
            let mut changed = 0;
            for ((name, va), (_, vb)) in sa.iter().zip(&sb) {
                if name.starts_with("http_requests_total") || name.starts_with("process_cpu") {
                    assert!(vb > va, "{name} {va} -> {vb} at step {step}");
                }
                if name.starts_with("http_request_duration_seconds_sum") || name.contains("_count")
                {
                    assert!(vb > va, "{name} {va} -> {vb} at step {step}");
                }
                if name.contains("_bucket") {
                    assert!(vb >= va, "{name} {va} -> {vb} at step {step}");
                }
                changed += usize::from(va != vb);
            }
            assert!(
                changed > 900,
                "only {changed} values changed at step {step}"
            );
            let buckets: Vec<f64> = sa
                .iter()
                .filter(|(n, _)| n.contains("resource_0\",method=\"GET\",le="))
                .map(|(_, v)| *v)
                .collect();
            assert_eq!(buckets.len(), BUCKETS.len());
            assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
            let count = sa.iter().find(|(n, _)| n.starts_with("http_request_duration_seconds_count{handler=\"/api/v1/resource_0\",method=\"GET\"")).unwrap().1;
            assert_eq!(count, buckets[BUCKETS.len() - 1]);
        }
    }

    #[test]
    fn values_are_deterministic_and_differ_by_target() {
        let template = build_template(200, false);
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        template.render(1, 500, &mut a);
        template.render(1, 500, &mut b);
        template.render(2, 500, &mut c);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn openmetrics_is_chosen_only_when_preferred() {
        assert!(wants_openmetrics(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        ));
        assert!(!wants_openmetrics("text/plain;version=0.0.4;q=1,*/*;q=0.1"));
        assert!(!wants_openmetrics(""));
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        let mut out = Vec::new();
        push_u64(&mut out, 0);
        out.push(b' ');
        push_u64(&mut out, u64::MAX);
        out.push(b' ');
        push_milli(&mut out, 12_005);
        assert_eq!(out, b"0 18446744073709551615 12.005");
    }
}
