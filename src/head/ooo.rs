//! Out-of-order samples (Prometheus 2.39+ `out_of_order_time_window`, `tsdb/head_append.go`
//! `appendable`, `tsdb/ooo_head.go`).
//!
//! Rule, as Prometheus 2.42: with a window `w > 0`, a sample older than its series' newest sample is
//! accepted when `t >= head max time - w` (the head's newest sample over all series, taken when the
//! transaction begins) and kept in the series' out-of-order buffer
//! ([`super::SeriesChunks::insert_ooo`]); outside the window it is rejected as today (out of order,
//! or out of bounds before the head's minimum valid time). A duplicate timestamp in the buffer is
//! dropped silently, the first sample stays (Prometheus' `OOOChunk.Insert`); it is counted as a
//! no-op. The in-order rules (duplicate of the newest sample, same-value no-op) are unchanged.
//!
//! Outside the window Prometheus 2.42 returns `ErrTooOldSample` ("too old"); we keep our existing
//! reasons (out of order, or out of bounds) so that counters mean what they meant without a window.
//!
//! Durability (in [`crate::db`]): out-of-order samples are logged, after the transaction's WAL
//! commit and before it is applied, as ordinary samples records to the write-behind log `wbl/`
//! (Prometheus' WBL: same segment format as the WAL; series records stay in the WAL). Opening
//! replays the WBL after the WAL, straight into the buffers (samples in a block's range skipped),
//! whatever the window now is. Head compaction rewrites the WBL: the buffered samples left after
//! truncation are logged into a fresh segment and older segments are deleted — not checkpointed,
//! because Prometheus 2.42 replays WBL segments only and ignores a `wbl/checkpoint.N`. Checked:
//! Prometheus 2.42 opened on such a directory (with or without its own window) replays the WBL and
//! answers the out-of-order samples (`tests/ooo.rs`). A crash between the WAL commit and the WBL
//! write loses that transaction's out-of-order samples (Prometheus has the same window).
//!
//! Deviations from Prometheus, by choice:
//! - Samples older than the head's minimum valid time (their range is in a block already) stay
//!   out of bounds even within the window; Prometheus accepts them and compacts them into new
//!   blocks that overlap older ones. Here `tsdbctl ingest` backfill covers that case.
//! - The buffer is one sorted vector per series, not 32-sample chunks mapped to `chunks_head/`.
//!
//! Reads ([`merge_ooo`]) present a series' chunks with its out-of-order samples merged in: the
//! in-order chunks that overlap the buffer's time span are decoded, merged with it and re-encoded
//! into chunks of at most [`super::SAMPLES_PER_CHUNK`] samples that overlap nothing else, so
//! queries and head compaction see one time-ordered sequence. At a timestamp present in both, the
//! in-order sample wins (the out-of-order one is dropped), for queries and blocks alike.

use crate::chunk::{XorAppender, XorIterator};
use crate::querier::ChunkMeta;
use std::sync::Arc;

/// `chunks` (in-order, non-overlapping, any order) with `ooo` (sorted, unique timestamps) merged in;
/// sorted by time. Chunks that do not overlap `ooo`'s time span are returned as they are.
pub fn merge_ooo(mut chunks: Vec<ChunkMeta>, ooo: &[(i64, f64)]) -> Vec<ChunkMeta> {
    let (Some(&(lo, _)), Some(&(hi, _))) = (ooo.first(), ooo.last()) else {
        return chunks;
    };
    chunks.sort_by_key(|c| c.min_t);
    let (overlapping, mut out): (Vec<ChunkMeta>, Vec<ChunkMeta>) = chunks
        .into_iter()
        .partition(|c| c.max_t >= lo && c.min_t <= hi);
    let mut in_order = Vec::new();
    for c in &overlapping {
        // Head chunks are our own encoding; a decode error ends that chunk's samples.
        if let Ok(mut it) = XorIterator::new(&c.data) {
            while let Ok(Some(s)) = it.next_sample() {
                in_order.push(s);
            }
        }
    }
    let mut app = XorAppender::new();
    let mut first = i64::MIN;
    let mut last = i64::MIN;
    let mut push = |t: i64, v: f64, out: &mut Vec<ChunkMeta>| {
        if app.num_samples() == super::SAMPLES_PER_CHUNK {
            let done = std::mem::take(&mut app);
            out.push(ChunkMeta {
                min_t: first,
                max_t: last,
                data: Arc::from(done.into_bytes()),
            });
        }
        if app.num_samples() == 0 {
            first = t;
        }
        app.append(t, v);
        last = t;
    };
    let (mut i, mut j) = (0, 0);
    while i < in_order.len() || j < ooo.len() {
        match (in_order.get(i), ooo.get(j)) {
            (Some(&(a, av)), Some(&(b, bv))) => {
                if a <= b {
                    push(a, av, &mut out);
                    i += 1;
                    if a == b {
                        j += 1;
                    }
                } else {
                    push(b, bv, &mut out);
                    j += 1;
                }
            }
            (Some(&(a, av)), None) => {
                push(a, av, &mut out);
                i += 1;
            }
            (None, Some(&(b, bv))) => {
                push(b, bv, &mut out);
                j += 1;
            }
            (None, None) => break,
        }
    }
    if app.num_samples() > 0 {
        out.push(ChunkMeta {
            min_t: first,
            max_t: last,
            data: Arc::from(app.into_bytes()),
        });
    }
    out.sort_by_key(|c| c.min_t);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(samples: &[(i64, f64)]) -> ChunkMeta {
        let mut a = XorAppender::new();
        for &(t, v) in samples {
            a.append(t, v);
        }
        ChunkMeta {
            min_t: samples[0].0,
            max_t: samples[samples.len() - 1].0,
            data: Arc::from(a.into_bytes()),
        }
    }

    fn samples(chunks: &[ChunkMeta]) -> Vec<(i64, f64)> {
        let mut out = Vec::new();
        for c in chunks {
            let mut it = XorIterator::new(&c.data).unwrap();
            while let Some(s) = it.next_sample().unwrap() {
                assert!(s.0 >= c.min_t && s.0 <= c.max_t);
                out.push(s);
            }
        }
        out
    }

    #[test]
    fn merges_in_time_order_and_in_order_wins_ties() {
        let a = chunk(&[(0, 0.0), (10, 1.0)]);
        let b = chunk(&[(20, 2.0), (30, 3.0)]);
        let c = chunk(&[(100, 9.0)]);
        let ooo = [(5, 5.0), (20, 99.0), (25, 7.0)];
        let out = merge_ooo(vec![c, b, a], &ooo);
        assert_eq!(
            samples(&out),
            vec![
                (0, 0.0),
                (5, 5.0),
                (10, 1.0),
                (20, 2.0),
                (25, 7.0),
                (30, 3.0),
                (100, 9.0)
            ]
        );
        for w in out.windows(2) {
            assert!(w[0].max_t < w[1].min_t);
        }
    }

    proptest::proptest! {
        /// Against a model: the union of both sample sets by timestamp, the in-order value winning,
        /// in time order, in chunks that do not overlap and hold at most 120 samples.
        #[test]
        fn merge_matches_a_model(
            in_order in proptest::collection::btree_map(0i64..2_000, 0u32..100, 0..400),
            ooo in proptest::collection::btree_map(0i64..2_000, 100u32..200, 0..200),
            per_chunk in 1usize..=120,
        ) {
            let ins: Vec<(i64, f64)> = in_order.iter().map(|(&t, &v)| (t, f64::from(v))).collect();
            let chunks: Vec<ChunkMeta> = ins.chunks(per_chunk).map(chunk).collect();
            let ooo: Vec<(i64, f64)> = ooo.iter().map(|(&t, &v)| (t, f64::from(v))).collect();
            let mut model: std::collections::BTreeMap<i64, f64> = ooo.iter().copied().collect();
            model.extend(ins.iter().copied());
            let out = merge_ooo(chunks, &ooo);
            let want: Vec<(i64, f64)> = model.into_iter().collect();
            proptest::prop_assert_eq!(samples(&out), want);
            for w in out.windows(2) {
                proptest::prop_assert!(w[0].max_t < w[1].min_t);
            }
            for c in &out {
                let n = XorIterator::new(&c.data).unwrap().num_samples();
                proptest::prop_assert!(n <= super::super::SAMPLES_PER_CHUNK);
            }
        }
    }

    #[test]
    fn no_ooo_returns_chunks_unchanged_and_long_merges_split() {
        let a = chunk(&[(0, 0.0)]);
        assert_eq!(merge_ooo(vec![a.clone()], &[]).len(), 1);
        let ooo: Vec<(i64, f64)> = (1..=300).map(|t| (t, t as f64)).collect();
        let out = merge_ooo(vec![a], &ooo);
        assert_eq!(out.len(), 4);
        assert_eq!(samples(&out).len(), 301);
    }
}
