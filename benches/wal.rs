//! WAL replay throughput: reopening a directory whose data is all in the WAL.
//! `cargo bench --bench wal`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tsdb::labels::Labels;
use tsdb::{Db, FsyncPolicy, Options};

const SERIES: usize = 2_000;
const SCRAPES: i64 = 480;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(dir.path(), Options::default().fsync(FsyncPolicy::Never)).unwrap();
        let mut app = db.appender();
        let ids: Vec<u64> = (0..SERIES)
            .map(|i| {
                let l = Labels::from_pairs(&[
                    ("__name__", "http_requests_total"),
                    ("instance", &format!("host-{:04}:9100", i / 20)),
                    ("handler", &format!("/api/{}", i % 20)),
                ]);
                app.append(&l, 1_700_000_000_000, 0.0).unwrap()
            })
            .collect();
        for k in 1..SCRAPES {
            for (j, &id) in ids.iter().enumerate() {
                app.append_id(
                    id,
                    1_700_000_000_000 + k * 15_000 + (j % 3) as i64,
                    (k * j as i64) as f64,
                )
                .unwrap();
            }
        }
        app.commit().unwrap();
    }
    let mut g = c.benchmark_group("wal_replay");
    g.sample_size(10);
    g.throughput(Throughput::Elements(SERIES as u64 * SCRAPES as u64));
    g.bench_function("open", |b| {
        b.iter(|| {
            let db = Db::open(dir.path(), Options::default().fsync(FsyncPolicy::Never)).unwrap();
            assert_eq!(
                db.open_report().replayed_samples,
                SERIES as u64 * SCRAPES as u64
            );
            db
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
