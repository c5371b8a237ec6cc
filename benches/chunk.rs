//! XOR chunk encode and decode cost per sample on scrape-like data: 120-sample chunks at a 15 s
//! interval with 1-3 ms jitter; counters rising by integers, gauges with 2-3 decimals.
//!
//! With `XOR_ONCE=encode` (or `decode`) in the environment the binary skips criterion and runs that
//! work once over both data sets, for instruction counts under
//! `valgrind --tool=callgrind target/release/deps/chunk-*`: the shared machine is too noisy for
//! wall-clock figures alone.

use criterion::{black_box, criterion_group, Criterion, Throughput};
use tsdb::chunk::{decode_xor_into, XorAppender, XorIterator};

const SAMPLES_PER_CHUNK: usize = 120;
const CHUNKS: usize = 64;

/// xorshift64*: deterministic data without another dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn timestamps(rng: &mut Rng) -> Vec<i64> {
    let mut t = 1_700_000_000_000i64 + rng.below(15_000) as i64;
    (0..SAMPLES_PER_CHUNK)
        .map(|_| {
            let jitter = 1 + rng.below(3) as i64;
            let sign = if rng.below(2) == 0 { -1 } else { 1 };
            t += 15_000 + sign * jitter;
            t
        })
        .collect()
}

fn counters(rng: &mut Rng) -> Chunks {
    (0..CHUNKS)
        .map(|_| {
            let mut v = rng.below(1_000_000) as f64;
            timestamps(rng)
                .into_iter()
                .map(|t| {
                    v += rng.below(100) as f64;
                    (t, v)
                })
                .collect()
        })
        .collect()
}

fn gauges(rng: &mut Rng) -> Chunks {
    (0..CHUNKS)
        .map(|_| {
            let base = rng.below(1000) as f64;
            timestamps(rng)
                .into_iter()
                .map(|t| {
                    let scale = if rng.below(2) == 0 { 100.0 } else { 1000.0 };
                    let v = base + (rng.below(10_000) as f64 / scale);
                    (t, (v * scale).round() / scale)
                })
                .collect()
        })
        .collect()
}

/// Samples of one chunk each.
type Chunks = Vec<Vec<(i64, f64)>>;

fn data_sets() -> [(&'static str, Chunks); 2] {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    [("counter", counters(&mut rng)), ("gauge", gauges(&mut rng))]
}

#[inline(never)]
fn encode(data: &[Vec<(i64, f64)>]) -> Vec<Vec<u8>> {
    data.iter()
        .map(|s| {
            let mut a = XorAppender::new();
            for &(t, v) in s {
                a.append(t, v);
            }
            a.into_bytes()
        })
        .collect()
}

#[inline(never)]
fn decode(chunks: &[Vec<u8>]) -> (f64, i64) {
    let mut sum = 0f64;
    let mut last = 0i64;
    for c in chunks {
        let Ok(mut it) = XorIterator::new(black_box(c)) else {
            continue;
        };
        while let Ok(Some((t, v))) = it.next_sample() {
            sum += v;
            last = t;
        }
    }
    (sum, last)
}

/// The same pass with the batch decoder into one reused buffer, as the query engine decodes.
#[inline(never)]
fn decode_batch(chunks: &[Vec<u8>], buf: &mut Vec<(i64, f64)>) -> (f64, i64) {
    let mut sum = 0f64;
    let mut last = 0i64;
    for c in chunks {
        buf.clear();
        let _ = decode_xor_into(black_box(c), i64::MIN, i64::MAX, buf);
        for &(t, v) in buf.iter() {
            sum += v;
            last = t;
        }
    }
    (sum, last)
}

fn bench(c: &mut Criterion) {
    for (name, data) in data_sets() {
        let chunks = encode(&data);
        let bytes: usize = chunks.iter().map(Vec::len).sum();
        eprintln!(
            "{name}: {:.2} bytes/sample",
            bytes as f64 / (CHUNKS * SAMPLES_PER_CHUNK) as f64
        );

        let mut g = c.benchmark_group(format!("xor/{name}"));
        g.throughput(Throughput::Elements((CHUNKS * SAMPLES_PER_CHUNK) as u64));
        g.bench_function("encode", |b| {
            b.iter(|| {
                for s in &data {
                    let mut a = XorAppender::new();
                    for &(t, v) in s {
                        a.append(t, v);
                    }
                    black_box(a.bytes());
                }
            })
        });
        g.bench_function("decode", |b| b.iter(|| black_box(decode(&chunks))));
        let mut buf = Vec::new();
        g.bench_function("decode_batch", |b| {
            b.iter(|| black_box(decode_batch(&chunks, &mut buf)))
        });
        g.finish();
    }
}

/// One pass of encoding or decoding over both data sets, for callgrind. Encoding runs 10 times so
/// that it dominates the data generation in the instruction count.
fn once(what: &str) {
    for (_, data) in data_sets() {
        match what {
            "encode" => {
                for _ in 0..10 {
                    black_box(encode(black_box(&data)));
                }
            }
            _ => {
                let chunks = encode(&data);
                let mut buf = Vec::new();
                for _ in 0..10 {
                    if what == "decode_batch" {
                        black_box(decode_batch(&chunks, &mut buf));
                    } else {
                        black_box(decode(&chunks));
                    }
                }
            }
        }
    }
}

criterion_group!(benches, bench);

fn main() {
    if let Some(what) = std::env::var_os("XOR_ONCE") {
        once(&what.to_string_lossy());
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
