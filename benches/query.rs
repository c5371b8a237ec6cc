//! PromQL engine cost on fleet-like data held in the head: 200 hosts x (8 cpu-mode counters +
//! 12 histogram buckets), scraped every 15 s for 2 h (1.9M samples).
//!
//! Each query runs instant (at the end) and as a range query over the 2 h at a 60 s step, with the
//! global rayon pool and with a 1-thread pool, so the parallel speed-up shows in one run. The
//! machine is shared and noisy: compare within one run.

use criterion::{criterion_group, criterion_main, Criterion};
use tsdb::labels::Labels;
use tsdb::{Db, FsyncPolicy, Options};

const HOSTS: usize = 200;
const STEP_MS: i64 = 15_000;
const SAMPLES: i64 = 480;
const LES: [&str; 12] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
];
const MODES: [&str; 8] = [
    "user", "system", "idle", "iowait", "irq", "softirq", "steal", "nice",
];

fn fleet() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default().fsync(FsyncPolicy::Never)).unwrap();
    let mut app = db.appender();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % 1000
    };
    for h in 0..HOSTS {
        let inst = format!("host-{h}:9100");
        let job = if h % 4 == 0 { "api" } else { "node" };
        let mut series: Vec<(Labels, f64, bool)> = Vec::new();
        for m in MODES {
            let l = Labels::from_pairs(&[
                ("__name__", "node_cpu_seconds_total"),
                ("cpu", "0"),
                ("instance", &inst),
                ("job", job),
                ("mode", m),
            ]);
            series.push((l, 0.0, false));
        }
        for le in LES {
            let l = Labels::from_pairs(&[
                ("__name__", "http_request_duration_seconds_bucket"),
                ("instance", &inst),
                ("job", job),
                ("le", le),
            ]);
            series.push((l, 0.0, true));
        }
        for i in 0..SAMPLES {
            let t = 1_700_000_000_000 + i * STEP_MS + 1 + (h as i64 % 3);
            let mut acc = 0.0;
            for (l, v, cumulative) in series.iter_mut() {
                if *cumulative {
                    acc += rnd() as f64;
                    *v += acc;
                } else {
                    *v += rnd() as f64 / 100.0;
                }
                app.append(l, t, *v).unwrap();
            }
        }
    }
    app.commit().unwrap();
    (dir, db)
}

fn bench(c: &mut Criterion) {
    let (_dir, db) = fleet();
    let start = 1_700_000_000_000i64;
    let end = start + SAMPLES * STEP_MS;
    let queries = [
        ("all_cpu", "sum(rate(node_cpu_seconds_total[5m]))"),
        (
            "sum_by_rate",
            "sum by (instance) (rate(node_cpu_seconds_total{mode=~\"user|system\"}[5m]))",
        ),
        (
            "hist_quantile",
            "histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
        ),
        (
            "avg_over_time",
            "avg_over_time(node_cpu_seconds_total[10m])",
        ),
    ];
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let mut g = c.benchmark_group("query");
    g.sample_size(10);
    for (name, q) in queries {
        g.bench_function(format!("{name}/instant"), |b| {
            b.iter(|| db.query(q, end).unwrap())
        });
        g.bench_function(format!("{name}/range"), |b| {
            b.iter(|| db.query_range(q, start, end, 60_000).unwrap())
        });
        g.bench_function(format!("{name}/range/1-thread"), |b| {
            b.iter(|| one.install(|| db.query_range(q, start, end, 60_000).unwrap()))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
