//! Block format throughput: writing a block, opening it, and resolving a selector through its
//! mapped index. `cargo bench --bench block`

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tsdb::block::{write_block, Block};
use tsdb::chunk::XorAppender;
use tsdb::labels::{Labels, Matcher};
use tsdb::querier::ChunkMeta;

const SERIES: usize = 20_000;
/// 2h of 15s scrapes: four 120-sample chunks per series.
const SAMPLES: i64 = 480;
const MINT: i64 = 1_699_999_200_000;

fn dataset() -> Vec<(Labels, Vec<ChunkMeta>)> {
    let mut v: Vec<(Labels, Vec<ChunkMeta>)> = (0..SERIES)
        .map(|i| {
            let l = Labels::from_pairs(&[
                ("__name__", &format!("metric_{}", i % 100)),
                ("instance", &format!("host-{:04}:9100", i / 100)),
                ("job", "node"),
            ]);
            let chunks = (0..SAMPLES / 120)
                .map(|c| {
                    let mut a = XorAppender::new();
                    for k in c * 120..(c + 1) * 120 {
                        a.append(MINT + k * 15_000 + (k % 3), (k * i as i64 % 1000) as f64);
                    }
                    ChunkMeta {
                        min_t: MINT + c * 120 * 15_000,
                        max_t: MINT + ((c + 1) * 120 - 1) * 15_000 + ((c + 1) * 120 - 1) % 3,
                        data: Arc::from(a.into_bytes()),
                    }
                })
                .collect();
            (l, chunks)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn bench(c: &mut Criterion) {
    let data = dataset();
    let dir = tempfile::tempdir().unwrap();
    let maxt = MINT + 2 * 3_600_000;
    let mut g = c.benchmark_group("block");
    g.sample_size(10);
    g.throughput(Throughput::Elements(SERIES as u64));
    g.bench_function("write_block", |b| {
        b.iter(|| {
            let sub = tempfile::tempdir_in(dir.path()).unwrap();
            write_block(sub.path(), MINT, maxt, data.iter().cloned()).unwrap()
        })
    });
    let ulid = write_block(dir.path(), MINT, maxt, data.iter().cloned()).unwrap();
    let bdir = dir.path().join(ulid.to_string());
    g.bench_function("open", |b| b.iter(|| Block::open(&bdir).unwrap()));
    let block = Block::open(&bdir).unwrap();
    // 1% of the series: one metric name of 100.
    let m = [Matcher::equal("__name__", "metric_42")];
    g.throughput(Throughput::Elements(SERIES as u64 / 100));
    g.bench_function("series_refs_1pct", |b| {
        b.iter(|| {
            let r = block.series_refs(&m).unwrap();
            assert_eq!(r.len(), SERIES / 100);
            r
        })
    });
    let re = [Matcher::new(
        tsdb::labels::MatchType::Regexp,
        "instance",
        "host-004[01]:9100",
    )
    .unwrap()];
    g.bench_function("series_refs_regex_1pct", |b| {
        b.iter(|| {
            let r = block.series_refs(&re).unwrap();
            assert_eq!(r.len(), SERIES / 100);
            r
        })
    });
    g.bench_function("select_1pct", |b| {
        b.iter(|| {
            let s = block.select(&m, MINT, maxt).unwrap();
            assert_eq!(s.len(), SERIES / 100);
            s
        })
    });
    g.throughput(Throughput::Elements(SERIES as u64));
    let all = [Matcher::equal("job", "node")];
    let refs = block.series_refs(&all).unwrap();
    g.bench_function("series_decode_all", |b| {
        let (mut labels, mut chunks) = (Vec::new(), Vec::new());
        b.iter(|| {
            for &r in &refs {
                block
                    .index()
                    .series_into(r, &mut labels, &mut chunks)
                    .unwrap();
            }
            labels.len()
        })
    });
    g.bench_function("select_all", |b| {
        b.iter(|| block.select(&all, MINT, maxt).unwrap().len())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
