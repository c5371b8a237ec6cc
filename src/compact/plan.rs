//! The compaction planner: which blocks to merge next, by Prometheus v2.42's `LeveledCompactor`
//! rules (`tsdb/compact.go`: `plan`, `selectOverlappingDirs`, `selectDirs`, `splitByRange`) and
//! its block ranges (`tsdb/db.go`: `ExponentialBlockRanges`, the ranges cut at the maximum block
//! duration; `cmd/prometheus/main.go`: that maximum defaults to 10% of the retention, at most 31
//! days).
//!
//! The planner only looks at meta.json contents, so it is pure and cheap; the database calls it
//! in a loop, merging what it returns until it returns nothing. Matching Prometheus' choices
//! matters beyond tidiness: a directory compacted by either program must end up with the same
//! block layout, or one would later find the other's blocks overlapping or misaligned.

use std::collections::BTreeSet;

use crate::block::{BlockMeta, Ulid};

/// Prometheus' upper bound on a compacted block's span when no retention caps it lower: 31 days.
pub const MAX_BLOCK_DURATION_MS: i64 = 31 * 24 * 3_600_000;
/// Number of ranges Prometheus derives from the head's block range, before the cap.
const DEFAULT_RANGE_STEPS: usize = 10;
/// Each range is this many times the previous one.
const DEFAULT_RANGE_FACTOR: i64 = 3;
/// A big enough block is rewritten when its tombstones exceed this share of its series.
const TOMBSTONE_RATIO: f64 = 0.05;

/// `steps` ranges starting at `min`, each `factor` times the previous (saturating, never
/// overflowing).
pub fn exponential_block_ranges(min: i64, steps: usize, factor: i64) -> Vec<i64> {
    let mut out = Vec::with_capacity(steps);
    let mut cur = min;
    for _ in 0..steps {
        out.push(cur);
        cur = cur.saturating_mul(factor);
    }
    out
}

/// The ranges Prometheus compacts into for a head block range of `block_range_ms` (2h by default)
/// and a retention of `retention_ms` (0 = none): 2h, 6h, 18h, 54h, … up to the maximum block
/// duration, which is 10% of the retention but at most 31 days. The first range is always kept,
/// even when the cap is below it (Prometheus raises the cap to the head's range then).
pub fn default_block_ranges(block_range_ms: i64, retention_ms: i64) -> Vec<i64> {
    let mut max = MAX_BLOCK_DURATION_MS;
    if retention_ms != 0 && retention_ms / 10 < max {
        max = retention_ms / 10;
    }
    max = max.max(block_range_ms);
    let mut ranges =
        exponential_block_ranges(block_range_ms, DEFAULT_RANGE_STEPS, DEFAULT_RANGE_FACTOR);
    if let Some(i) = ranges.iter().position(|&r| r > max) {
        ranges.truncate(i);
    }
    ranges
}

/// The blocks to merge next into one, in time order; empty when there is nothing to do.
///
/// In Prometheus' order of preference:
/// 1. the first run of blocks whose time ranges overlap (vertical compaction);
/// 2. otherwise, leaving out the newest block (the one with the latest minimum time, which was
///    probably just cut from the head and may still be backed up on its own), the blocks filling
///    one aligned range of `ranges[1..]`, smallest range first — a range is taken when its blocks
///    span it completely, or when a newer block lies beyond them (no block can fill the gap any
///    more); blocks whose compaction failed disable their range;
/// 3. otherwise the newest block (again leaving out the freshest) that is at least
///    `ranges[len/2]` long and has more than 5% tombstones per series (numTombstones /
///    (numSeries + 1), as Prometheus computes it), or a shorter one with at least one tombstone
///    per series, to be rewritten without its deleted data.
pub fn plan(metas: &[BlockMeta], ranges: &[i64]) -> Vec<Ulid> {
    if metas.is_empty() {
        return Vec::new();
    }
    let mut dms: Vec<&BlockMeta> = metas.iter().collect();
    // Stable, so blocks with equal minimum times keep the caller's order.
    dms.sort_by_key(|m| m.min_time);

    let overlapping = select_overlapping(&dms);
    if !overlapping.is_empty() {
        return overlapping;
    }

    dms.pop();
    let leveled = select_leveled(&dms, ranges);
    if !leveled.is_empty() {
        return leveled;
    }

    let Some(&big) = ranges.get(ranges.len() / 2) else {
        return Vec::new();
    };
    for m in dms.iter().rev() {
        let s = &m.stats;
        if m.max_time.saturating_sub(m.min_time) < big {
            // A small block is only worth rewriting when everything in it is deleted.
            if s.num_tombstones > 0 && s.num_tombstones >= s.num_series {
                return vec![m.ulid];
            }
            break;
        }
        if s.num_tombstones as f64 / (s.num_series as f64 + 1.0) > TOMBSTONE_RATIO {
            return vec![m.ulid];
        }
    }
    Vec::new()
}

/// The first run of blocks (sorted by minimum time) each of which starts before the latest end
/// of the ones before it.
fn select_overlapping(dms: &[&BlockMeta]) -> Vec<Ulid> {
    let mut out = Vec::new();
    let Some(first) = dms.first() else {
        return out;
    };
    let mut global_max = first.max_time;
    for w in dms.windows(2) {
        let (prev, d) = (w[0], w[1]);
        if d.min_time < global_max {
            if out.is_empty() {
                out.push(prev.ulid);
            }
            out.push(d.ulid);
        } else if !out.is_empty() {
            break;
        }
        global_max = global_max.max(d.max_time);
    }
    out
}

/// Prometheus' `selectDirs`: the first group of `ranges[1..]`-aligned blocks ready to merge.
fn select_leveled(dms: &[&BlockMeta], ranges: &[i64]) -> Vec<Ulid> {
    let Some(last) = dms.last() else {
        return Vec::new();
    };
    if ranges.len() < 2 {
        return Vec::new();
    }
    let high = last.min_time;
    for &iv in &ranges[1..] {
        for group in split_by_range(dms, iv) {
            if group.iter().any(|m| m.compaction.failed) {
                continue;
            }
            let (Some(a), Some(b)) = (group.first(), group.last()) else {
                continue;
            };
            let (mint, maxt) = (a.min_time, b.max_time);
            if (maxt.saturating_sub(mint) == iv || maxt <= high) && group.len() > 1 {
                return group.iter().map(|m| m.ulid).collect();
            }
        }
    }
    Vec::new()
}

/// Groups consecutive blocks (sorted by minimum time) that lie within one range of length `tr`
/// aligned to multiples of `tr`; blocks that stick out of their range belong to no group.
fn split_by_range<'a>(dms: &[&'a BlockMeta], tr: i64) -> Vec<Vec<&'a BlockMeta>> {
    let mut out = Vec::new();
    if tr <= 0 {
        return out;
    }
    let mut i = 0;
    while let Some(m) = dms.get(i) {
        // Start of the aligned range holding the block's start (floor division for negatives).
        let t0 = m.min_time.div_euclid(tr).saturating_mul(tr);
        let end = t0.saturating_add(tr);
        if m.max_time > end {
            i += 1;
            continue;
        }
        let mut group = Vec::new();
        while let Some(d) = dms.get(i) {
            if d.max_time > end {
                break;
            }
            group.push(*d);
            i += 1;
        }
        out.push(group);
    }
    out
}

/// Blocks named as a parent by another block in `metas`, sorted: a crash between writing a merged
/// block and deleting its inputs leaves both, and the inputs' data is already in the merged one
/// (Prometheus deletes such parents when it reloads its blocks).
pub fn deletable_parents(metas: &[BlockMeta]) -> Vec<Ulid> {
    let present: BTreeSet<Ulid> = metas.iter().map(|m| m.ulid).collect();
    let parents: BTreeSet<Ulid> = metas
        .iter()
        .flat_map(|m| m.compaction.parents.iter().map(|p| p.ulid))
        .filter(|u| present.contains(u))
        .collect();
    parents.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{BlockCompaction, BlockDesc, BlockStats};

    const HOUR: i64 = 3_600_000;

    fn meta(name: u128, mint: i64, maxt: i64) -> BlockMeta {
        BlockMeta {
            ulid: Ulid::from_u128(name),
            min_time: mint,
            max_time: maxt,
            stats: BlockStats::default(),
            compaction: BlockCompaction::default(),
            version: 1,
        }
    }

    fn with_stats(mut m: BlockMeta, series: u64, tombstones: u64) -> BlockMeta {
        m.stats.num_series = series;
        m.stats.num_tombstones = tombstones;
        m
    }

    fn names(v: &[Ulid]) -> Vec<u128> {
        v.iter().map(|u| u.to_u128()).collect()
    }

    #[test]
    fn exponential_ranges() {
        assert_eq!(exponential_block_ranges(20, 5, 3), [20, 60, 180, 540, 1620]);
        assert_eq!(exponential_block_ranges(2, 0, 3), Vec::<i64>::new());
        let big = exponential_block_ranges(i64::MAX / 2, 3, 3);
        assert_eq!(big, [i64::MAX / 2, i64::MAX, i64::MAX]);
    }

    #[test]
    fn default_ranges_follow_prometheus_caps() {
        // 15d retention: max block 36h, so 2h, 6h, 18h.
        assert_eq!(
            default_block_ranges(2 * HOUR, 15 * 24 * HOUR),
            [2 * HOUR, 6 * HOUR, 18 * HOUR]
        );
        // No retention: capped at 31d = 744h, so up to 486h (2·3^5).
        assert_eq!(
            default_block_ranges(2 * HOUR, 0),
            [2, 6, 18, 54, 162, 486].map(|h| h * HOUR)
        );
        // A year of retention: 10% is 876h > 31d, so 31d still caps.
        assert_eq!(
            default_block_ranges(2 * HOUR, 365 * 24 * HOUR),
            default_block_ranges(2 * HOUR, 0)
        );
        // Retention below the head's range: only the head's range.
        assert_eq!(default_block_ranges(2 * HOUR, HOUR), [2 * HOUR]);
        // A cap equal to a range keeps it (only ranges above the cap go).
        assert_eq!(
            default_block_ranges(2 * HOUR, 60 * HOUR),
            [2 * HOUR, 6 * HOUR]
        );
    }

    /// The cases of Prometheus' `TestLeveledCompactor_plan` (v2.42), ranges 20, 60, 180, 540, 1620.
    #[test]
    fn prometheus_plan_cases() {
        let ranges = [20, 60, 180, 540, 1620];
        let cases: Vec<(&str, Vec<BlockMeta>, Vec<u128>)> = vec![
            ("outside range", vec![meta(1, 0, 20)], vec![]),
            (
                "wait for four blocks of size 20",
                vec![meta(1, 0, 20), meta(2, 20, 40)],
                vec![],
            ),
            (
                "three, but the fresh one is ignored",
                vec![meta(1, 0, 20), meta(2, 20, 40), meta(3, 40, 60)],
                vec![],
            ),
            (
                "block filling the parent range appeared",
                vec![
                    meta(1, 0, 20),
                    meta(2, 20, 40),
                    meta(3, 40, 60),
                    meta(4, 60, 80),
                ],
                vec![1, 2, 3],
            ),
            (
                "next parent range with a gap, fresh one ignored",
                vec![meta(1, 0, 20), meta(2, 20, 40), meta(3, 60, 80)],
                vec![],
            ),
            (
                "gap that can no longer be filled",
                vec![
                    meta(1, 0, 20),
                    meta(2, 20, 40),
                    meta(3, 60, 80),
                    meta(4, 80, 100),
                ],
                vec![1, 2],
            ),
            (
                "20, 20, 20, 60, 60 with 5 fresh",
                vec![
                    meta(1, 0, 20),
                    meta(2, 20, 40),
                    meta(3, 40, 60),
                    meta(4, 60, 120),
                    meta(5, 120, 180),
                ],
                vec![1, 2, 3],
            ),
            (
                "20 + 60 + 60",
                vec![
                    meta(2, 20, 40),
                    meta(4, 60, 120),
                    meta(5, 960, 980),
                    meta(6, 120, 180),
                    meta(7, 720, 960),
                ],
                vec![2, 4, 6],
            ),
            (
                "large block with many tombstones, no fresh block",
                vec![with_stats(meta(1, 0, 540), 10, 3)],
                vec![],
            ),
            (
                "large block with many tombstones, fresh appears",
                vec![with_stats(meta(1, 0, 540), 10, 3), meta(2, 540, 560)],
                vec![1],
            ),
            (
                "small block with tombstones is left alone",
                vec![with_stats(meta(1, 0, 60), 10, 3), meta(2, 60, 80)],
                vec![],
            ),
            (
                "no loop on zero tombstones and zero series",
                vec![with_stats(meta(1, 0, 540), 0, 0), meta(2, 540, 560)],
                vec![],
            ),
            (
                "fresh block is the latest by time, not by ULID",
                vec![
                    meta(5, 0, 360),
                    meta(6, 540, 560),
                    meta(7, 360, 420),
                    meta(8, 420, 540),
                ],
                vec![7, 8],
            ),
            (
                "overlapping 1",
                vec![meta(1, 0, 20), meta(2, 19, 40), meta(3, 40, 60)],
                vec![1, 2],
            ),
            (
                "overlapping 2",
                vec![meta(1, 0, 20), meta(2, 20, 40), meta(3, 30, 50)],
                vec![2, 3],
            ),
            (
                "overlapping 3",
                vec![meta(1, 0, 20), meta(2, 10, 40), meta(3, 30, 50)],
                vec![1, 2, 3],
            ),
            (
                "overlapping 4",
                vec![
                    meta(5, 0, 360),
                    meta(6, 340, 560),
                    meta(7, 360, 420),
                    meta(8, 420, 540),
                ],
                vec![5, 6, 7, 8],
            ),
            (
                "overlapping 5",
                vec![
                    meta(1, 0, 10),
                    meta(2, 9, 20),
                    meta(3, 30, 40),
                    meta(4, 39, 50),
                ],
                vec![1, 2],
            ),
        ];
        for (title, metas, want) in cases {
            assert_eq!(names(&plan(&metas, &ranges)), want, "{title}");
        }
    }

    /// Prometheus' `TestRangeWithFailedCompactionWontGetSelected`.
    #[test]
    fn failed_compaction_disables_its_range() {
        let ranges = [20, 60, 240, 720, 2160];
        let cases = [
            vec![
                meta(1, 0, 20),
                meta(2, 20, 40),
                meta(3, 40, 60),
                meta(4, 60, 80),
            ],
            vec![
                meta(1, 0, 20),
                meta(2, 20, 40),
                meta(3, 60, 80),
                meta(4, 80, 100),
            ],
            vec![
                meta(1, 0, 20),
                meta(2, 20, 40),
                meta(3, 40, 60),
                meta(4, 60, 120),
                meta(5, 120, 180),
                meta(6, 180, 200),
            ],
        ];
        for mut metas in cases {
            assert!(!plan(&metas, &ranges).is_empty(), "selected when healthy");
            metas[1].compaction.failed = true;
            assert_eq!(plan(&metas, &ranges), Vec::<Ulid>::new());
        }
    }

    #[test]
    fn degenerate_inputs() {
        assert!(plan(&[], &[20, 60]).is_empty());
        assert!(plan(&[meta(1, 0, 20), meta(2, 20, 40)], &[]).is_empty());
        assert!(plan(&[meta(1, 0, 20), meta(2, 20, 40), meta(3, 40, 60)], &[20]).is_empty());
        // Negative times align downwards, as Prometheus' floor division does.
        let metas = [
            meta(1, -60, -40),
            meta(2, -40, -20),
            meta(3, -20, 0),
            meta(4, 0, 20),
        ];
        assert_eq!(names(&plan(&metas, &[20, 60])), [1, 2, 3]);
        // A fully deleted small block is rewritten.
        let metas = [with_stats(meta(1, 0, 20), 4, 4), meta(2, 20, 40)];
        assert_eq!(names(&plan(&metas, &[20, 60, 180])), [1]);
    }

    #[test]
    fn parents_of_present_blocks_are_deletable() {
        let mut merged = meta(10, 0, 60);
        merged.compaction.parents = [1u128, 2, 3]
            .iter()
            .map(|&u| BlockDesc {
                ulid: Ulid::from_u128(u),
                min_time: 0,
                max_time: 20,
            })
            .collect();
        let metas = vec![
            meta(3, 40, 60),
            merged.clone(),
            meta(1, 0, 20),
            meta(4, 60, 80),
        ];
        assert_eq!(names(&deletable_parents(&metas)), [1, 3]);
        assert!(deletable_parents(&[meta(1, 0, 20), meta(2, 20, 40)]).is_empty());
        assert!(deletable_parents(&[merged]).is_empty());
    }
}
