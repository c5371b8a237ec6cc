//! The scrape → append → commit path of `tsdbctl serve` without HTTP: `TARGETS` targets of 1,000
//! series each (label shapes of `examples/scrape_sim.rs`: counters, histogram buckets, gauges),
//! scraped `CYCLES` times through [`ScrapeState::scrape_and_report`] into a [`Db`] with a WAL.
//!
//! It exists to count instructions per appended sample, which is repeatable on a loaded machine
//! where CPU seconds are not:
//! ```sh
//! cargo bench --bench scrape_append --no-run
//! SCRAPE_TARGETS=200 SCRAPE_CYCLES=6 valgrind --tool=callgrind \
//!     --toggle-collect='*scrape_and_report*' target/release/deps/scrape_append-HASH
//! ```
//! (instructions of the collected part ÷ samples of the measured cycles). Without valgrind it
//! prints CPU time and RSS growth per cycle. The first cycle creates the series and is not timed.

use std::sync::Arc;
use std::time::Instant;

use tsdb::labels::Labels;
use tsdb::server::scrape::append::{AppendSpec, ScrapeState};
use tsdb::server::scrape::metrics::Metrics;
use tsdb::{Db, Options};

const SERIES: usize = 1000;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The series texts of one target (the same for every target: the target labels differ).
fn series_texts() -> Vec<String> {
    let mut out = Vec::with_capacity(SERIES);
    let methods = ["GET", "POST", "PUT", "DELETE"];
    let codes = ["200", "404", "500"];
    'c: for h in 0.. {
        for m in methods {
            for c in codes {
                if out.len() == 298 {
                    break 'c;
                }
                out.push(format!(
                    r#"http_requests_total{{code="{c}",handler="/api/v1/resource_{h}",method="{m}"}}"#
                ));
            }
        }
    }
    for h in 0..24 {
        let labels = format!(r#"handler="/api/v1/resource_{}",method="GET""#, h);
        for le in [
            "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
        ] {
            out.push(format!(
                r#"http_request_duration_seconds_bucket{{{labels},le="{le}"}}"#
            ));
        }
        out.push(format!("http_request_duration_seconds_sum{{{labels}}}"));
        out.push(format!("http_request_duration_seconds_count{{{labels}}}"));
    }
    let mut i = 0;
    while out.len() < SERIES {
        if i % 2 == 0 {
            out.push(format!(
                r#"app_queue_depth{{queue="q{}",shard="{}"}}"#,
                i / 16,
                i % 16
            ));
        } else {
            out.push(format!(
                r#"app_worker_busy_ratio{{pool="p{}",worker="{}"}}"#,
                i / 16,
                i % 16
            ));
        }
        i += 1;
    }
    out
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51afd7ed558ccd);
    x ^= x >> 33;
    x
}

fn render(texts: &[String], target: u64, step: u64, out: &mut Vec<u8>) {
    use std::io::Write;
    out.clear();
    for (i, s) in texts.iter().enumerate() {
        let seed = mix(target * 7919 + i as u64);
        let v = if s.starts_with("app_") {
            mix(seed ^ step) % 1000
        } else {
            step * (seed % 50) + mix(seed ^ step) % 7
        };
        let _ = writeln!(out, "{s} {v}");
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn main() {
    let targets = env("SCRAPE_TARGETS", 200);
    let cycles = env("SCRAPE_CYCLES", 6);
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Db::open(dir.path(), Options::default()).expect("open");
    let metrics = Metrics::unregistered();
    let texts = series_texts();
    let specs: Vec<AppendSpec> = (0..targets)
        .map(|k| AppendSpec {
            target_labels: Labels::from_pairs(&[
                ("instance", &format!("127.0.0.1:{}", 20000 + k)),
                ("job", "sim"),
            ]),
            honor_labels: false,
            honor_timestamps: true,
            metric_rules: Arc::new(Vec::new()),
            sample_limit: 0,
            label_limit: 0,
            label_name_length_limit: 0,
            label_value_length_limit: 0,
        })
        .collect();
    let mut states: Vec<ScrapeState> = (0..targets).map(|_| ScrapeState::default()).collect();
    let mut body = Vec::new();
    let t0 = 1_767_225_600_000i64;
    let (mut cpu0, mut rss0, mut wall0) = (0.0, 0, Instant::now());
    for c in 0..cycles {
        if c == 1 {
            (cpu0, rss0, wall0) = (cpu_seconds(), rss_kib(), Instant::now());
        }
        for (k, st) in states.iter_mut().enumerate() {
            // Spread over the interval as the scrape loops are.
            let t = t0 + c as i64 * 15_000 + (k as i64 * 15_000) / targets as i64;
            render(&texts, k as u64, c as u64, &mut body);
            let r = st.scrape_and_report(
                &db,
                &specs[k],
                &metrics,
                Ok(("text/plain; version=0.0.4", &body)),
                t,
                t,
                &|| 0.01,
            );
            assert!(r.error.is_none() && r.commit_error.is_none(), "{r:?}");
            assert_eq!(r.appended.added, SERIES as u64);
        }
    }
    let measured = (cycles.saturating_sub(1) * targets * (SERIES + 5)) as f64;
    let cpu = cpu_seconds() - cpu0;
    let rss = rss_kib();
    println!(
        "{targets} targets x {SERIES} series, {} measured cycles: {:.3} CPU s ({:.0} ns/sample, wall {:.2} s), \
         RSS {} MiB (+{:.2} MiB/cycle), {} head series",
        cycles - 1,
        cpu,
        cpu * 1e9 / measured,
        wall0.elapsed().as_secs_f64(),
        rss / 1024,
        (rss as f64 - rss0 as f64) / 1024.0 / (cycles.saturating_sub(1).max(1)) as f64,
        db.head().num_series(),
    );
}
