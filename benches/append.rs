//! Head append throughput: stage + apply scrapes of 10,000 series, on 1 and 2 threads.
//! `cargo bench --bench append`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tsdb::head::Head;
use tsdb::labels::Labels;

const SERIES: usize = 10_000;
const SCRAPES: i64 = 120;

fn series_labels(i: usize) -> Labels {
    Labels::from_pairs(&[
        ("__name__", "node_cpu_seconds_total"),
        ("cpu", &(i % 8).to_string()),
        ("instance", &format!("host-{:04}:9100", i / 100)),
        ("job", "node"),
        ("mode", &format!("m{}", i % 100)),
    ])
}

/// Appends `SCRAPES` scrapes of `ids` (one transaction per scrape).
fn append_scrapes(head: &Head, ids: &[u64], base: i64) {
    for k in 0..SCRAPES {
        let mut app = head.appender();
        let t = base + k * 15_000;
        for (j, &id) in ids.iter().enumerate() {
            let _ = app.append_id(id, t, (k as f64) * 1.5 + j as f64);
        }
        app.apply();
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("head_append");
    g.sample_size(10);
    g.throughput(Throughput::Elements(SERIES as u64 * SCRAPES as u64));
    for threads in [1usize, 2] {
        g.bench_with_input(
            BenchmarkId::new("threads", threads),
            &threads,
            |b, &threads| {
                b.iter_with_setup(
                    || {
                        let head = Head::new(7_200_000, threads);
                        let ids: Vec<u64> = (0..SERIES)
                            .map(|i| head.get_or_create(&series_labels(i)).0.id)
                            .collect();
                        (head, ids)
                    },
                    |(head, ids)| {
                        std::thread::scope(|s| {
                            for part in ids.chunks(SERIES / threads) {
                                let head = &head;
                                s.spawn(move || append_scrapes(head, part, 1_700_000_000_000));
                            }
                        });
                        head
                    },
                )
            },
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
