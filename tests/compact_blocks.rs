//! Block compaction against the real promtool (Prometheus 2.42, `/usr/bin/promtool`): blocks
//! written by our `BlockWriter`, chosen by `tsdb::compact::plan` and merged by
//! `tsdb::compact::merge_blocks`, must pass `promtool tsdb analyze` and `promtool tsdb dump` must
//! print exactly the samples of the inputs — for adjacent 2h blocks (leveled compaction) and for
//! overlapping ones (vertical compaction, one sample per timestamp, the first input's winning).
//!
//! Without the binary the tests print a skip notice, or fail if `TSDB_REQUIRE_PEERS=1`.

mod common;

use common::{available, parse_dump, promtool, PROMTOOL};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use tsdb::block::{Block, BlockMeta, BlockWriter, Ulid};
use tsdb::chunk::XorAppender;
use tsdb::compact::{default_block_ranges, deletable_parents, merge_blocks, plan};
use tsdb::labels::Labels;
use tsdb::querier::ChunkMeta;

const HOUR: i64 = 3_600_000;

type Samples = BTreeMap<Labels, Vec<(i64, f64)>>;

fn promtool_available() -> bool {
    available(PROMTOOL)
}

/// Values compare bit for bit, except that every NaN equals every NaN (text output loses NaN bits).
fn same(a: &Samples, b: &Samples) -> Result<(), String> {
    if a.len() != b.len() {
        return Err(format!("{} series vs {}", a.len(), b.len()));
    }
    for ((la, sa), (lb, sb)) in a.iter().zip(b) {
        if la != lb {
            return Err(format!("series {la} vs {lb}"));
        }
        if sa.len() != sb.len() {
            return Err(format!("{la}: {} samples vs {}", sa.len(), sb.len()));
        }
        for (x, y) in sa.iter().zip(sb) {
            let eq = x.0 == y.0 && (x.1.to_bits() == y.1.to_bits() || x.1.is_nan() && y.1.is_nan());
            if !eq {
                return Err(format!("{la}: sample {x:?} vs {y:?}"));
            }
        }
    }
    Ok(())
}

/// Series over `[start, end)` every `step` (jittered by `phase`), some present only in some
/// blocks (`part` picks which), with values that need full precision.
fn dataset(start: i64, end: i64, step: i64, phase: i64, part: usize) -> Samples {
    let mut out = Samples::new();
    for (n, name) in ["http_requests_total", "node_load1", "weird"]
        .iter()
        .enumerate()
    {
        for inst in ["a:9100", "b:9100", "c \"quoted\" \\ é"] {
            for shard in 0..4usize {
                if shard == 3 && part % 2 == 1 {
                    continue;
                }
                let shard_s = (shard + 4 * (part % 3 == 2) as usize).to_string();
                let l = Labels::from_pairs(&[
                    ("__name__", name),
                    ("instance", inst),
                    ("shard", &shard_s),
                ]);
                let mut s = Vec::new();
                let mut t = start + phase + (shard as i64) * 1000;
                let mut k = 0i64;
                while t < end {
                    let v = match n {
                        0 => (k * 7 + part as i64) as f64,
                        1 => (k as f64 * 0.1 + part as f64).sin() * 1e3,
                        _ if k % 50 == 49 => f64::NAN,
                        _ => k as f64 / 3.0 + part as f64,
                    };
                    s.push((t, v));
                    t += step + (k % 3) - 1;
                    k += 1;
                }
                out.insert(l, s);
            }
        }
    }
    out
}

fn chunks_of(samples: &[(i64, f64)]) -> Vec<ChunkMeta> {
    samples
        .chunks(120)
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

fn write(dir: &Path, mint: i64, maxt: i64, data: &Samples) -> Arc<Block> {
    let mut w = BlockWriter::new(dir, mint, maxt).unwrap();
    for (l, s) in data {
        w.add_series(l.clone(), &chunks_of(s)).unwrap();
    }
    let u = w.finish().unwrap();
    Arc::new(Block::open(&dir.join(u.to_string())).unwrap())
}

/// Merges `blocks` into `out` (a directory of its own, so promtool sees only the result) and
/// checks it with `promtool tsdb analyze`, `list` and `dump` against `want`.
fn merge_and_check(out: &Path, blocks: &[Arc<Block>], want: &Samples) -> BlockMeta {
    let mut last = (0, 0);
    let ulid = merge_blocks(out, blocks, &mut |d, t| last = (d, t))
        .unwrap()
        .expect("samples remain");
    assert_eq!(last.0, last.1, "progress reaches its total");
    fs::create_dir_all(out.join("wal")).unwrap();
    let d = out.to_str().unwrap();

    let analyze = promtool(&["tsdb", "analyze", d, &ulid.to_string()]);
    assert!(analyze.contains(&ulid.to_string()), "{analyze}");
    assert!(
        analyze.contains(&format!("Series: {}", want.len())),
        "{analyze}"
    );

    let total: usize = want.values().map(Vec::len).sum();
    let list = promtool(&["tsdb", "list", d]);
    assert!(list.contains(&ulid.to_string()), "{list}");
    assert!(list.contains(&total.to_string()), "sample count in {list}");

    let dump = promtool(&["tsdb", "dump", d]);
    assert_eq!(dump.lines().count(), total);
    if let Err(e) = same(&parse_dump(&dump), want) {
        panic!("promtool dump of the merged block differs from the inputs: {e}");
    }
    let merged = Block::open(&out.join(ulid.to_string())).unwrap();
    merged.meta().clone()
}

#[test]
fn promtool_reads_leveled_merge_of_three_2h_blocks() {
    if !promtool_available() {
        return;
    }
    let input = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let t0 = 1_700_000_000_000 / (6 * HOUR) * (6 * HOUR);
    let mut blocks = Vec::new();
    let mut want = Samples::new();
    // Four consecutive 2h blocks; the planner leaves the newest alone and picks the three that
    // fill the first 6h range.
    for part in 0..4usize {
        let mint = t0 + part as i64 * 2 * HOUR;
        let data = dataset(mint, mint + 2 * HOUR, 15_000, 0, part);
        if part < 3 {
            for (l, s) in &data {
                want.entry(l.clone()).or_default().extend(s);
            }
        }
        blocks.push(write(input.path(), mint, mint + 2 * HOUR, &data));
    }
    let metas: Vec<BlockMeta> = blocks.iter().map(|b| b.meta().clone()).collect();
    let chosen = plan(&metas, &default_block_ranges(2 * HOUR, 15 * 24 * HOUR));
    let first3: Vec<Ulid> = metas[..3].iter().map(|m| m.ulid).collect();
    assert_eq!(chosen, first3);

    let meta = merge_and_check(out.path(), &blocks[..3], &want);
    assert_eq!((meta.min_time, meta.max_time), (t0, t0 + 6 * HOUR));
    assert_eq!(meta.compaction.level, 2);
    let mut sources = first3.clone();
    sources.sort();
    assert_eq!(meta.compaction.sources, sources);
    let parents: Vec<Ulid> = meta.compaction.parents.iter().map(|p| p.ulid).collect();
    assert_eq!(parents, first3);
    let chunks: u64 = metas[..3].iter().map(|m| m.stats.num_chunks).sum();
    assert_eq!(
        meta.stats.num_chunks, chunks,
        "adjacent blocks: chunks copied"
    );

    // Had the inputs' deletion been interrupted, they would be recognised as leftovers.
    let mut all = metas.clone();
    all.push(meta);
    let mut gone = first3;
    gone.sort();
    assert_eq!(deletable_parents(&all), gone);
}

#[test]
fn promtool_reads_vertical_merge_of_overlapping_blocks() {
    if !promtool_available() {
        return;
    }
    let input = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let t0 = 1_700_000_000_000 / (2 * HOUR) * (2 * HOUR);
    // Three blocks over the same 2h with samples every 10 s at phases 0, 5 and 0 s: the third
    // repeats the first one's timestamps with other values, which must lose.
    let mut blocks = Vec::new();
    let mut model: BTreeMap<Labels, BTreeMap<i64, f64>> = BTreeMap::new();
    for (part, phase) in [(0usize, 0i64), (1, 5_000), (3, 0)] {
        let data = dataset(t0, t0 + 2 * HOUR, 10_000, phase, part);
        for (l, s) in &data {
            let m = model.entry(l.clone()).or_default();
            for &(t, v) in s {
                m.entry(t).or_insert(v);
            }
        }
        blocks.push(write(input.path(), t0, t0 + 2 * HOUR, &data));
    }
    let metas: Vec<BlockMeta> = blocks.iter().map(|b| b.meta().clone()).collect();
    let chosen = plan(&metas, &default_block_ranges(2 * HOUR, 0));
    assert_eq!(chosen.len(), 3, "overlapping blocks are all chosen");
    let want: Samples = model
        .into_iter()
        .map(|(l, s)| (l, s.into_iter().collect()))
        .collect();
    let duplicates: usize = blocks
        .iter()
        .map(|b| b.meta().stats.num_samples as usize)
        .sum::<usize>()
        - want.values().map(Vec::len).sum::<usize>();
    assert!(
        duplicates > 1000,
        "the third block repeats timestamps ({duplicates})"
    );
    let meta = merge_and_check(out.path(), &blocks, &want);
    assert_eq!((meta.min_time, meta.max_time), (t0, t0 + 2 * HOUR));
    assert_eq!(meta.compaction.level, 2);
    assert_eq!(meta.compaction.parents.len(), 3);
}
