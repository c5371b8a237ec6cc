//! Writes a synthetic fleet straight into Prometheus blocks, for the figures of issue 3 that need
//! more data than a text file can carry comfortably (50k series x 24h is 288M samples, ~30 GB of
//! exposition text): resident memory after opening, and selector latency across blocks.
//!
//! ```text
//! cargo run --release --example gen_blocks -- DIR HOSTS HOURS BLOCK_HOURS
//! ```
//!
//! `HOSTS` hosts x 100 metrics, scraped every 15 s for `HOURS` hours, in blocks of `BLOCK_HOURS`
//! (aligned to that range from the Unix epoch, as Prometheus' compactor aligns them; pick 18 or 6
//! so that Prometheus finds nothing to compact on open). Labels: `__name__` (100 names), `instance`
//! (`host-NNNN:9100`), `job` (`api` for every 4th host, else `node`), `zone` (`z0`..`z9`). Values:
//! counters with varied increments and gauges with limited precision, from a fixed-seed generator.

use std::path::PathBuf;
use std::sync::Arc;
use tsdb::block::BlockWriter;
use tsdb::chunk::XorAppender;
use tsdb::labels::Labels;
use tsdb::querier::ChunkMeta;

const METRICS: usize = 100;
const STEP_MS: i64 = 15_000;
const HOUR: i64 = 3_600_000;
/// 2026-01-01T00:00:00Z rounded down to a multiple of 54 h, so that 2h/6h/18h/54h ranges align.
const START: i64 = 1_767_225_600_000 / (54 * HOUR) * (54 * HOUR);

fn usage() -> ! {
    eprintln!("usage: gen_blocks DIR HOSTS HOURS BLOCK_HOURS");
    std::process::exit(2)
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 11
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 4 {
        usage();
    }
    let dir = PathBuf::from(&args[0]);
    let num = |s: &str| s.parse::<i64>().unwrap_or_else(|_| usage());
    let (hosts, hours, block_hours) = (num(&args[1]), num(&args[2]), num(&args[3]));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));

    let mut series: Vec<(Labels, u64)> = Vec::new();
    for h in 0..hosts {
        for m in 0..METRICS {
            let name = if m % 3 == 0 {
                format!("node_gauge_{m:02}")
            } else {
                format!("node_counter_{m:02}_total")
            };
            let instance = format!("host-{h:04}:9100");
            let job = if h % 4 == 0 { "api" } else { "node" };
            let zone = format!("z{}", h % 10);
            let l = Labels::from_pairs(&[
                ("__name__", &name),
                ("instance", &instance),
                ("job", job),
                ("zone", &zone),
            ]);
            series.push((l, (h as u64) << 8 | m as u64));
        }
    }
    series.sort_by(|a, b| a.0.cmp(&b.0));
    let mut symbols: Vec<String> = series
        .iter()
        .flat_map(|(l, _)| {
            l.iter()
                .flat_map(|x| [x.name.to_string(), x.value.to_string()])
                .collect::<Vec<_>>()
        })
        .collect();
    symbols.sort();
    symbols.dedup();

    let started = std::time::Instant::now();
    let mut samples = 0u64;
    let range = block_hours * HOUR;
    let mut mint = START;
    while mint < START + hours * HOUR {
        let maxt = (mint + range).min(START + hours * HOUR);
        let mut w =
            BlockWriter::with_symbols(&dir, mint, mint + range, symbols.iter().map(String::as_str))
                .unwrap_or_else(|e| panic!("{e}"));
        for (labels, seed) in &series {
            let m = (seed & 0xff) as usize;
            let mut rng = Rng(*seed ^ 0x9e37_79b9_7f4a_7c15);
            // The series' state at `mint`, as if it had run since START.
            let steps_before = (mint - START) / STEP_MS;
            let kind = m % 3;
            let mut v = if kind == 0 {
                (rng.next() % 10_000) as f64 / 4.0
            } else {
                (steps_before as f64) * ((m % 7 + 1) as f64)
            };
            let mut chunks = Vec::new();
            let mut app = XorAppender::new();
            let mut first = 0;
            let mut t = mint + (seed % 1000) as i64;
            while t < maxt {
                if app.num_samples() == 120 {
                    let full = std::mem::replace(&mut app, XorAppender::new());
                    chunks.push(ChunkMeta {
                        min_t: first,
                        max_t: t - STEP_MS,
                        data: Arc::from(full.into_bytes()),
                    });
                }
                if app.num_samples() == 0 {
                    first = t;
                }
                app.append(t, v);
                samples += 1;
                v = if kind == 0 {
                    // A gauge: a random walk at a precision of 0.25.
                    (v + ((rng.next() % 9) as f64 - 4.0) * 0.25).max(0.0)
                } else if kind == 1 {
                    v + (rng.next() % 50) as f64
                } else {
                    v + (rng.next() % 1000) as f64 / 100.0
                };
                t += STEP_MS;
            }
            if app.num_samples() > 0 {
                chunks.push(ChunkMeta {
                    min_t: first,
                    max_t: t - STEP_MS,
                    data: Arc::from(app.into_bytes()),
                });
            }
            w.add_series(labels.clone(), &chunks)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let ulid = w.finish().unwrap_or_else(|e| panic!("{e}"));
        eprintln!("block {ulid}: [{mint}, {})", mint + range);
        mint += range;
    }
    eprintln!(
        "series={} samples={samples} start={START} seconds={:.1}",
        series.len(),
        started.elapsed().as_secs_f64()
    );
}
