//! Compaction: turning the oldest range of the head into a persistent block (Prometheus'
//! `tsdb/compact.go`, head part). Merging blocks into larger ones (leveled compaction) is not
//! implemented yet.
//!
//! Head chunks never straddle a block-range boundary (they are cut at the end of their range, see
//! [`crate::head`]), so the block for `[mint, maxt)` is exactly the head chunks whose samples all lie
//! in it: completed chunks are shared with the block writer without copying.

use crate::block::{self, BlockError, Ulid};
use crate::head::Head;
use crate::labels::Labels;
use crate::querier::ChunkMeta;
use std::path::Path;
use std::sync::Arc;

/// The head's series with their chunks in `[mint, maxt)`, sorted by labels, as the block writer
/// takes them. Series without such chunks are left out.
pub fn head_range(head: &Head, mint: i64, maxt: i64) -> Vec<(Labels, Vec<ChunkMeta>)> {
    let mut out = Vec::new();
    for s in head.all_series() {
        let chunks: Vec<ChunkMeta> = {
            let c = s.lock();
            let mut v: Vec<ChunkMeta> = c
                .closed
                .iter()
                .filter(|c| c.min_t >= mint && c.max_t < maxt)
                .map(|c| ChunkMeta {
                    min_t: c.min_t,
                    max_t: c.max_t,
                    data: c.data.clone(),
                })
                .collect();
            if let Some(h) = &c.head {
                if h.app.num_samples() > 0 && h.min_t >= mint && h.max_t < maxt {
                    v.push(ChunkMeta {
                        min_t: h.min_t,
                        max_t: h.max_t,
                        data: Arc::from(h.app.bytes()),
                    });
                }
            }
            v
        };
        if !chunks.is_empty() {
            out.push((s.to_labels(), chunks));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Writes the head's `[mint, maxt)` as a level-1 block in `dir`; `None` if the head holds no sample
/// there.
pub fn write_head_block(
    dir: &Path,
    head: &Head,
    mint: i64,
    maxt: i64,
) -> Result<Option<Ulid>, BlockError> {
    let series = head_range(head, mint, maxt);
    if series.is_empty() {
        return Ok(None);
    }
    block::write_block(dir, mint, maxt, series.into_iter()).map(Some)
}
