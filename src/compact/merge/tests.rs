use super::*;
use crate::block::tombstones::TOMBSTONES_FILENAME;
use crate::block::Tombstones;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::fs;
use std::time::Instant;

type Model = BTreeMap<Labels, Vec<(i64, f64)>>;
/// A series' chunks as read back: (min_t, max_t, bytes).
type RawChunks = Vec<(i64, i64, Vec<u8>)>;

fn lbl(name: &str, i: usize) -> Labels {
    Labels::from_pairs(&[("__name__", name), ("i", &i.to_string())])
}

fn chunks_of(samples: &[(i64, f64)], per: usize) -> Vec<ChunkMeta> {
    samples
        .chunks(per)
        .map(|s| {
            let mut a = XorAppender::new();
            for &(t, v) in s {
                a.append(t, v);
            }
            ChunkMeta {
                min_t: s[0].0,
                max_t: s[s.len() - 1].0,
                data: Arc::from(a.into_bytes()),
            }
        })
        .collect()
}

fn write(dir: &Path, mint: i64, maxt: i64, data: &Model, per: usize) -> Arc<Block> {
    let mut w = BlockWriter::new(dir, mint, maxt).unwrap();
    for (l, s) in data {
        w.add_series(l.clone(), &chunks_of(s, per)).unwrap();
    }
    let u = w.finish().unwrap();
    Arc::new(Block::open(&dir.join(u.to_string())).unwrap())
}

fn series_ref(b: &Block, l: &Labels) -> u64 {
    let mut p = b.index().all_series().unwrap();
    while let Some(r) = p.next() {
        if b.series(r).unwrap().labels == *l {
            return r;
        }
    }
    panic!("{l} not in block");
}

/// Rewrites the block's tombstones file with `deletions` added and reopens it.
fn delete(b: &Block, deletions: &[(Labels, i64, i64)]) -> Arc<Block> {
    let mut t: Tombstones = b.tombstones().clone();
    for (l, mint, maxt) in deletions {
        t.add(
            series_ref(b, l),
            Interval {
                mint: *mint,
                maxt: *maxt,
            },
        );
    }
    fs::write(b.dir().join(TOMBSTONES_FILENAME), t.encode()).unwrap();
    Arc::new(Block::open(b.dir()).unwrap())
}

/// Every series with its raw chunks, checking chunk invariants on the way.
fn read(b: &Block) -> (Model, BTreeMap<Labels, RawChunks>) {
    let (mut model, mut raw) = (Model::new(), BTreeMap::new());
    let mut p = b.index().all_series().unwrap();
    let mut prev: Option<Labels> = None;
    while let Some(r) = p.next() {
        let s = b.series(r).unwrap();
        assert!(prev.as_ref().is_none_or(|p| *p < s.labels), "series sorted");
        prev = Some(s.labels.clone());
        let mut samples = Vec::new();
        let mut chunks = Vec::new();
        for c in &s.chunks {
            let data = b.chunk(c.chunk_ref).unwrap();
            let got: Vec<(i64, f64)> = XorIterator::new(data)
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(!got.is_empty() && got.len() <= MAX_SAMPLES_PER_CHUNK);
            assert_eq!((got[0].0, got[got.len() - 1].0), (c.min_t, c.max_t));
            assert!(c.min_t >= b.meta().min_time && c.max_t < b.meta().max_time);
            samples.extend(got);
            chunks.push((c.min_t, c.max_t, data.to_vec()));
        }
        assert!(
            samples.windows(2).all(|w| w[0].0 < w[1].0),
            "{}: chunks overlap or repeat timestamps",
            s.labels
        );
        assert!(!samples.is_empty(), "{}: series without samples", s.labels);
        model.insert(s.labels.clone(), samples);
        raw.insert(s.labels, chunks);
    }
    (model, raw)
}

fn bits(m: &Model) -> BTreeMap<Labels, Vec<(i64, u64)>> {
    m.iter()
        .map(|(l, s)| {
            (
                l.clone(),
                s.iter().map(|&(t, v)| (t, v.to_bits())).collect(),
            )
        })
        .collect()
}

fn merge(dir: &Path, blocks: &[Arc<Block>]) -> Option<Arc<Block>> {
    let mut calls = Vec::new();
    let u = merge_blocks(dir, blocks, &mut |d, t| calls.push((d, t))).unwrap();
    let total: u64 = blocks
        .iter()
        .map(|b| b.index().all_series().unwrap().len() as u64)
        .sum();
    assert_eq!(calls.first(), Some(&(0, total)));
    assert_eq!(calls.last(), Some(&(total, total)));
    assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0));
    let leftovers: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(crate::block::TMP_FOR_CREATION_SUFFIX))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    u.map(|u| Arc::new(Block::open(&dir.join(u.to_string())).unwrap()))
}

/// `n` samples every `step` from `start`, values from the series' seed.
fn run(start: i64, n: usize, step: i64, seed: f64) -> Vec<(i64, f64)> {
    (0..n)
        .map(|k| (start + k as i64 * step, seed * 1000.0 + k as f64 * 0.25))
        .collect()
}

#[test]
fn adjacent_blocks_keep_chunk_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut blocks = Vec::new();
    let mut inputs = Vec::new();
    for (k, start) in [0i64, 100_000, 200_000].into_iter().enumerate() {
        let mut m = Model::new();
        for i in 0..20 {
            // Series 19 only in the middle block; series 0 misses it.
            if (i == 19 && k != 1) || (i == 0 && k == 1) {
                continue;
            }
            m.insert(lbl("up", i), run(start + i as i64, 300, 300, i as f64));
        }
        blocks.push(write(dir.path(), start, start + 100_000, &m, 120));
        inputs.push(m);
    }
    let merged = merge(dir.path(), &blocks).unwrap();

    let mut want_raw: BTreeMap<Labels, RawChunks> = BTreeMap::new();
    let mut want = Model::new();
    for b in &blocks {
        let (m, raw) = read(b);
        for (l, c) in raw {
            want_raw.entry(l).or_default().extend(c);
        }
        for (l, s) in m {
            want.entry(l).or_default().extend(s);
        }
    }
    let (got, got_raw) = read(&merged);
    assert_eq!(got_raw, want_raw, "chunks copied byte for byte");
    assert_eq!(bits(&got), bits(&want));

    let meta = merged.meta();
    assert_eq!((meta.min_time, meta.max_time), (0, 300_000));
    assert_eq!(meta.compaction.level, 2);
    let mut sources: Vec<Ulid> = blocks.iter().map(|b| b.meta().ulid).collect();
    sources.sort();
    assert_eq!(meta.compaction.sources, sources);
    let parents: Vec<(Ulid, i64, i64)> = meta
        .compaction
        .parents
        .iter()
        .map(|p| (p.ulid, p.min_time, p.max_time))
        .collect();
    let want_parents: Vec<(Ulid, i64, i64)> = blocks
        .iter()
        .map(|b| (b.meta().ulid, b.meta().min_time, b.meta().max_time))
        .collect();
    assert_eq!(parents, want_parents);
    assert!(!meta.compaction.deletable);
    assert_eq!(meta.stats.num_series, 20);
    let samples: u64 = blocks.iter().map(|b| b.meta().stats.num_samples).sum();
    let chunks: u64 = blocks.iter().map(|b| b.meta().stats.num_chunks).sum();
    assert_eq!(meta.stats.num_samples, samples);
    assert_eq!(meta.stats.num_chunks, chunks);
    assert_eq!(meta.stats.num_tombstones, 0);
    // The symbol table is the union of the inputs' ("0" and "19" are each missing from one).
    let mut union: Vec<&str> = Vec::new();
    for b in &blocks {
        union.extend(b.index().symbols().unwrap());
    }
    union.sort();
    union.dedup();
    assert_eq!(merged.index().symbols().unwrap(), union);
}

#[test]
fn overlapping_blocks_merge_with_first_input_winning_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let a_series = lbl("m", 1);
    let only_a = lbl("m", 2);
    let only_b = lbl("m", 3);
    // Block a: t = 0, 10, ..., 1990 (200 samples), value 1. Block b: t = 5, 10, 15, ...,
    // 2495 (499 samples, every 5), value 2; a's timestamps that b also has are duplicates.
    let a_samples: Vec<(i64, f64)> = (0..200).map(|k| (k * 10, 1.0)).collect();
    let b_samples: Vec<(i64, f64)> = (1..500).map(|k| (k * 5, 2.0)).collect();
    let mut ma = Model::new();
    ma.insert(a_series.clone(), a_samples.clone());
    ma.insert(only_a.clone(), run(0, 10, 100, 7.0));
    let mut mb = Model::new();
    mb.insert(a_series.clone(), b_samples.clone());
    mb.insert(only_b.clone(), run(3000, 10, 100, 8.0));
    let a = write(dir.path(), 0, 2000, &ma, 120);
    let b = write(dir.path(), 0, 4000, &mb, 120);
    let merged = merge(dir.path(), &[a.clone(), b.clone()]).unwrap();

    let mut want: BTreeMap<i64, f64> = b_samples.iter().copied().collect();
    want.extend(a_samples.iter().copied());
    let want: Vec<(i64, f64)> = want.into_iter().collect();
    let (got, raw) = read(&merged);
    assert_eq!(
        bits(&got)[&a_series],
        bits(&Model::from([(a_series.clone(), want.clone())]))[&a_series]
    );
    assert_eq!(got[&only_a], ma[&only_a]);
    assert_eq!(got[&only_b], mb[&only_b]);
    // The overlapping run (up to b's fourth chunk, which a's last chunk overlaps) is re-encoded
    // in chunks of 120 samples, the last one shorter; b's fifth chunk overlaps nothing and is
    // copied.
    let sizes: Vec<usize> = raw[&a_series]
        .iter()
        .map(|c| XorIterator::new(&c.2).unwrap().num_samples())
        .collect();
    let n = want.len();
    assert_eq!(sizes, [120, 120, 120, 120, 1, 19]);
    assert_eq!(raw[&a_series].last(), read(&b).1[&a_series].last());
    // Series that did not overlap keep their chunks.
    assert_eq!(raw[&only_a], read(&a).1[&only_a]);
    assert_eq!(raw[&only_b], read(&b).1[&only_b]);
    assert_eq!((merged.meta().min_time, merged.meta().max_time), (0, 4000));
    assert_eq!(merged.meta().stats.num_samples, (n + 20) as u64);

    // The other input order lets b's values win.
    let merged = merge(dir.path(), &[b, a]).unwrap();
    let (got, _) = read(&merged);
    assert!(got[&a_series]
        .iter()
        .filter(|s| s.0 % 5 == 0 && s.0 > 0 && s.0 < 2500)
        .all(|s| s.1 == 2.0));
}

#[test]
fn identical_overlapping_chunks_are_copied_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Model::new();
    for i in 0..5 {
        m.insert(lbl("dup", i), run(i as i64, 250, 10, i as f64));
    }
    let a = write(dir.path(), 0, 5000, &m, 120);
    let b = write(dir.path(), 0, 5000, &m, 120);
    let merged = merge(dir.path(), &[a.clone(), b]).unwrap();
    let (got, raw) = read(&merged);
    assert_eq!(bits(&got), bits(&m));
    assert_eq!(raw, read(&a).1);
    assert_eq!(merged.meta().compaction.level, 2);
    assert_eq!(merged.meta().compaction.sources.len(), 2);
}

#[test]
fn tombstones_are_applied() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Model::new();
    for i in 0..4 {
        m.insert(lbl("t", i), run(0, 400, 10, i as f64));
    }
    let a = write(dir.path(), 0, 4000, &m, 120);
    let untouched_chunks = read(&a).1;
    // Series 0: a hole in the middle of one chunk; series 1: everything; series 2: the first
    // chunk exactly (t 0..=1190).
    let a = delete(
        &a,
        &[
            (lbl("t", 0), 1500, 1799),
            (lbl("t", 1), i64::MIN, i64::MAX),
            (lbl("t", 2), 0, 1190),
        ],
    );
    let mut n = Model::new();
    n.insert(lbl("t", 9), run(4000, 10, 10, 9.0));
    let b = write(dir.path(), 4000, 6000, &n, 120);
    let merged = merge(dir.path(), &[a, b]).unwrap();
    let (got, raw) = read(&merged);

    let mut want = m.clone();
    want.remove(&lbl("t", 1));
    want.get_mut(&lbl("t", 0))
        .unwrap()
        .retain(|s| !(1500..=1799).contains(&s.0));
    want.get_mut(&lbl("t", 2)).unwrap().retain(|s| s.0 > 1190);
    want.insert(lbl("t", 9), n[&lbl("t", 9)].clone());
    assert_eq!(bits(&got), bits(&want));
    // Chunks without deleted samples are copied as they were.
    assert_eq!(raw[&lbl("t", 3)], untouched_chunks[&lbl("t", 3)]);
    assert_eq!(raw[&lbl("t", 2)][..], untouched_chunks[&lbl("t", 2)][1..]);
    assert_eq!(merged.meta().stats.num_series, 4);
    assert_eq!(merged.meta().stats.num_tombstones, 0);
    assert!(merged.tombstones().is_empty());
}

#[test]
fn nothing_left_gives_none_and_no_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Model::new();
    m.insert(lbl("gone", 0), run(0, 50, 10, 0.0));
    m.insert(lbl("gone", 1), run(0, 50, 10, 1.0));
    let a = write(dir.path(), 0, 1000, &m, 120);
    let a = delete(&a, &[(lbl("gone", 0), 0, 1000), (lbl("gone", 1), -5, 490)]);
    let before = fs::read_dir(dir.path()).unwrap().count();
    assert!(merge(dir.path(), &[a]).is_none());
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), before);
}

#[test]
fn no_inputs_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let r = merge_blocks(dir.path(), &[], &mut |_, _| {});
    assert!(matches!(r, Err(CompactError::NoBlocks)));
}

#[test]
fn damaged_chunk_names_its_block() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Model::new();
    m.insert(lbl("x", 0), run(0, 100, 10, 0.0));
    let a = write(dir.path(), 0, 1000, &m, 120);
    let ulid = a.meta().ulid;
    let seg = a.dir().join("chunks").join("000001");
    let mut bytes = fs::read(&seg).unwrap();
    let last = bytes.len() - 6;
    bytes[last] ^= 0xff;
    fs::write(&seg, bytes).unwrap();
    let a = Arc::new(Block::open(a.dir()).unwrap());
    let err = merge_blocks(dir.path(), &[a], &mut |_, _| {}).unwrap_err();
    assert!(
        matches!(&err, CompactError::Read { block, .. } if *block == ulid),
        "{err}"
    );
    assert!(err.to_string().contains(&ulid.to_string()), "{err}");
}

/// One input block for the property test: range, per-series samples and deletions.
#[derive(Debug, Clone)]
struct Input {
    mint: i64,
    maxt: i64,
    series: BTreeMap<usize, Vec<(i64, f64)>>,
    deleted: Vec<(usize, i64, i64)>,
    per_chunk: usize,
}

fn input() -> impl Strategy<Value = Input> {
    (0i64..2000, 1i64..1500, 1usize..=MAX_SAMPLES_PER_CHUNK).prop_flat_map(
        |(mint, len, per_chunk)| {
            let maxt = mint + len;
            let series = prop::collection::btree_map(
                0usize..6,
                prop::collection::btree_map(mint..maxt, 0u8..4, 0..300),
                0..6,
            );
            let deleted = prop::collection::vec((0usize..6, mint - 10..maxt + 10, 0i64..400), 0..4);
            (series, deleted).prop_map(move |(series, deleted)| Input {
                mint,
                maxt,
                series: series
                    .into_iter()
                    .map(|(i, s)| (i, s.into_iter().map(|(t, v)| (t, f64::from(v))).collect()))
                    .collect(),
                deleted: deleted
                    .into_iter()
                    .map(|(i, a, len)| (i, a, a + len))
                    .collect(),
                per_chunk,
            })
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn merge_equals_model(inputs in prop::collection::vec(input(), 2..5)) {
        let dir = tempfile::tempdir().unwrap();
        let mut blocks = Vec::new();
        // Model: the first input's sample wins a timestamp; deleted samples never enter.
        let mut want: BTreeMap<Labels, BTreeMap<i64, f64>> = BTreeMap::new();
        for inp in &inputs {
            let m: Model = inp
                .series
                .iter()
                .filter(|(_, s)| !s.is_empty())
                .map(|(&i, s)| (lbl("p", i), s.clone()))
                .collect();
            let mut b = write(dir.path(), inp.mint, inp.maxt, &m, inp.per_chunk);
            let dels: Vec<(Labels, i64, i64)> = inp
                .deleted
                .iter()
                .filter(|(i, _, _)| m.contains_key(&lbl("p", *i)))
                .map(|&(i, a, z)| (lbl("p", i), a, z))
                .collect();
            if !dels.is_empty() {
                b = delete(&b, &dels);
            }
            for (l, s) in &m {
                let gone = |t: i64| dels.iter().any(|(dl, a, z)| dl == l && *a <= t && t <= *z);
                for &(t, v) in s {
                    if !gone(t) {
                        want.entry(l.clone()).or_default().entry(t).or_insert(v);
                    }
                }
            }
            blocks.push(b);
        }
        want.retain(|_, s| !s.is_empty());
        match merge(dir.path(), &blocks) {
            None => prop_assert!(want.is_empty()),
            Some(merged) => {
                let (got, _) = read(&merged);
                let want: Model = want
                    .into_iter()
                    .map(|(l, s)| (l, s.into_iter().collect()))
                    .collect();
                prop_assert_eq!(bits(&got), bits(&want));
                let st = &merged.meta().stats;
                prop_assert_eq!(st.num_series, got.len() as u64);
                prop_assert_eq!(st.num_samples, got.values().map(|s| s.len() as u64).sum::<u64>());
                let mint = inputs.iter().map(|i| i.mint).min().unwrap();
                let maxt = inputs.iter().map(|i| i.maxt).max().unwrap();
                prop_assert_eq!((merged.meta().min_time, merged.meta().max_time), (mint, maxt));
            }
        }
    }
}

/// Throughput of merging three adjacent 2h blocks of 10k series × 480 samples (15 s scrapes) and
/// of merging them when they overlap completely. Run with
/// `cargo test --release --lib compact::merge::tests::merge_throughput -- --ignored --nocapture`.
#[test]
#[ignore]
fn merge_throughput() {
    const SERIES: usize = 10_000;
    const HOUR: i64 = 3_600_000;
    let dir = tempfile::tempdir().unwrap();
    let mut adjacent = Vec::new();
    let mut overlapping = Vec::new();
    for k in 0..3i64 {
        let start = k * 2 * HOUR;
        let mut m = Model::new();
        for i in 0..SERIES {
            m.insert(lbl("bench_metric", i), run(start, 480, 15_000, i as f64));
        }
        adjacent.push(write(dir.path(), start, start + 2 * HOUR, &m, 120));
        let mut m = Model::new();
        for i in 0..SERIES {
            m.insert(
                lbl("bench_metric", i),
                run(k * 5_000, 480, 15_000, i as f64 + k as f64),
            );
        }
        overlapping.push(write(dir.path(), 0, 2 * HOUR, &m, 120));
    }
    for (name, blocks) in [("adjacent", &adjacent), ("overlapping", &overlapping)] {
        let t = Instant::now();
        let u = merge_blocks(dir.path(), blocks, &mut |_, _| {})
            .unwrap()
            .unwrap();
        let secs = t.elapsed().as_secs_f64();
        let b = Block::open(&dir.path().join(u.to_string())).unwrap();
        let input_series = (3 * SERIES) as f64;
        eprintln!(
            "merge {name}: 3 blocks x {SERIES} series x 480 samples in {secs:.3} s: \
             {:.0} input series/s, {:.1} M samples/s ({} output samples)",
            input_series / secs,
            input_series * 480.0 / secs / 1e6,
            b.meta().stats.num_samples
        );
    }
}
