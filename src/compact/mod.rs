//! Compaction (Prometheus v2.42 `tsdb/compact.go`): turning the oldest range of the head into a
//! persistent level-1 block, planning which blocks to merge next ([`plan`], the `LeveledCompactor`
//! rules) and merging them into one block ([`merge_blocks`], `Compact`/`populateBlock`), including
//! blocks whose time ranges overlap (vertical compaction).
//!
//! Head chunks never straddle a block-range boundary (they are cut at the end of their range, see
//! [`crate::head`]), so the block for `[mint, maxt)` is exactly the head chunks whose samples all lie
//! in it: chunks in memory are shared with the block writer without copying, chunks in
//! `chunks_head/` are read from their map.
//!
//! This module decides and writes; it never deletes a block. Deleting merged inputs (and the
//! leftovers of a crash, [`deletable_parents`]) is the database's job, after the merged block is in
//! place.

mod merge;
mod plan;

pub use merge::{merge_blocks, merge_blocks_as, Lineage, MAX_SAMPLES_PER_CHUNK};
pub use plan::{
    default_block_ranges, deletable_parents, exponential_block_ranges, plan, MAX_BLOCK_DURATION_MS,
};

use crate::block::{self, BlockError, IndexError, Ulid};
use crate::chunk::ChunkError;
use crate::head::{ClosedChunk, Head, HeadChunksError};
use crate::labels::Labels;
use crate::querier::ChunkMeta;
use std::path::Path;
use std::sync::Arc;

/// The head's series with their chunks in `[mint, maxt)`, sorted by labels, as the block writer
/// takes them; out-of-order samples of the range are merged in ([`crate::head::ooo::merge_ooo`]). Samples the head's tombstones cover are left out (chunks they overlap are
/// re-encoded), so a deletion in the head never reaches a block; series without chunks left are
/// left out.
pub fn head_range(
    head: &Head,
    mint: i64,
    maxt: i64,
) -> Result<Vec<(Labels, Vec<ChunkMeta>)>, HeadChunksError> {
    let mut out = Vec::new();
    let tombstones = head.tombstones();
    for s in head.all_series() {
        let (closed, open, ooo): (Vec<ClosedChunk>, Option<ChunkMeta>, Vec<(i64, f64)>) = {
            let c = s.lock();
            let ooo = c
                .ooo_samples()
                .iter()
                .filter(|&&(t, _)| t >= mint && t < maxt)
                .copied()
                .collect();
            let closed = c
                .closed
                .iter()
                .filter(|c| c.min_t >= mint && c.max_t < maxt)
                .cloned()
                .collect();
            let open = c.head.as_ref().and_then(|h| {
                (h.app.num_samples() > 0 && h.min_t >= mint && h.max_t < maxt).then(|| ChunkMeta {
                    min_t: h.min_t,
                    max_t: h.max_t,
                    data: Arc::from(h.app.bytes()),
                })
            });
            (closed, open, ooo)
        };
        // Completed chunks are read from `chunks_head/` after the series lock is released.
        let mut chunks = Vec::with_capacity(closed.len() + 1);
        for c in closed {
            chunks.push(ChunkMeta {
                min_t: c.min_t,
                max_t: c.max_t,
                data: head.chunk_data(&c.data)?,
            });
        }
        chunks.extend(open);
        // Out-of-order samples of the range go into the block with the in-order ones.
        let chunks = crate::head::ooo::merge_ooo(chunks, &ooo);
        let chunks = crate::querier::without_deleted(chunks, tombstones.get(s.id));
        if !chunks.is_empty() {
            out.push((s.to_labels(), chunks));
        }
    }
    drop(tombstones);
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Writes the head's `[mint, maxt)` as a level-1 block in `dir`; `None` if the head holds no sample
/// there.
pub fn write_head_block(
    dir: &Path,
    head: &Head,
    mint: i64,
    maxt: i64,
) -> Result<Option<Ulid>, BlockError> {
    let series = head_range(head, mint, maxt).map_err(|e| BlockError::Io {
        block: "head".to_string(),
        path: head
            .chunk_disk()
            .map_or_else(Default::default, |d| d.dir().to_path_buf()),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })?;
    if series.is_empty() {
        return Ok(None);
    }
    block::write_block(dir, mint, maxt, series.into_iter()).map(Some)
}

/// Why a merge failed. Read errors name the input block; nothing of a failed merge stays on disk
/// (the block under construction is removed).
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error("compaction needs at least one input block")]
    NoBlocks,
    /// `source` names the block too (by directory name).
    #[error("reading input: {source}")]
    Read {
        block: Ulid,
        #[source]
        source: BlockError,
    },
    #[error("input block {block}: index: {source}")]
    Index {
        block: Ulid,
        #[source]
        source: IndexError,
    },
    #[error("input block {block}: series {labels}: chunk {chunk_ref:#x}: {source}")]
    Chunk {
        block: Ulid,
        labels: String,
        chunk_ref: u64,
        #[source]
        source: ChunkError,
    },
    #[error("input block {block}: series {labels} comes after {previous} in the index")]
    Unsorted {
        block: Ulid,
        labels: String,
        previous: String,
    },
    #[error("writing the merged block: {0}")]
    Write(#[source] BlockError),
}
