//! `tsdbctl archive` and `tsdbctl unarchive`: replace blocks of a data directory by archive blocks
//! (an extension Prometheus cannot read, see `tsdb::block::archive`) and back. Argument parsing and
//! output only; the work is the library's.

use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use tsdb::block::archive::{self, BlockInfo, DataDirLock};
use tsdb::block::Ulid;
use tsdb::db::dir_size;

#[derive(Args)]
pub struct ArchiveArgs {
    /// Data directory (no other process may have it open).
    #[arg(long, default_value = "./data")]
    db: PathBuf,
    /// zstd level, 1..=22: 3 is fast, 19 is ~3 % smaller and ~15x slower.
    #[arg(long, default_value_t = archive::DEFAULT_LEVEL)]
    level: i32,
    /// Archive every compatible block that ended this long (e.g. `30d`) before the newest block's
    /// end, as Prometheus measures retention.
    #[arg(long, conflicts_with = "ulids")]
    older_than: Option<String>,
    /// Blocks to archive.
    #[arg(required_unless_present = "older_than")]
    ulids: Vec<String>,
}

#[derive(Args)]
pub struct UnarchiveArgs {
    /// Data directory (no other process may have it open).
    #[arg(long, default_value = "./data")]
    db: PathBuf,
    /// Unarchive every archive block.
    #[arg(long, conflicts_with = "ulids")]
    all: bool,
    /// Archive blocks to turn back into Prometheus-compatible blocks.
    #[arg(required_unless_present = "all")]
    ulids: Vec<String>,
}

fn parse_ulids(v: &[String]) -> Result<Vec<Ulid>, String> {
    v.iter()
        .map(|s| s.parse::<Ulid>().map_err(|e| e.to_string()))
        .collect()
}

fn lock(db: &std::path::Path) -> Result<(DataDirLock, Vec<BlockInfo>), String> {
    let lock = DataDirLock::acquire(db).map_err(|e| e.to_string())?;
    for u in archive::finish_interrupted(&lock).map_err(|e| e.to_string())? {
        eprintln!("tsdbctl: removed block {u}, left behind by an interrupted replacement");
    }
    let blocks = archive::list_blocks(db).map_err(|e| e.to_string())?;
    Ok((lock, blocks))
}

fn report(verb: &str, old: Ulid, new: Ulid, db: &std::path::Path, started: Instant) {
    let size = |u: Ulid| dir_size(&db.join(u.to_string()));
    outln!(
        "{verb} {old} -> {new} ({} bytes, {:.2} s)",
        size(new),
        started.elapsed().as_secs_f64()
    );
}

pub fn archive(a: ArchiveArgs) -> Result<ExitCode, String> {
    let (lock, blocks) = lock(&a.db)?;
    let chosen: Vec<Ulid> = match &a.older_than {
        Some(d) => {
            let d = tsdb::api::parse_duration(d).map_err(|e| e.to_string())?;
            let newest = blocks.iter().map(|b| b.meta.max_time).max().unwrap_or(0);
            blocks
                .iter()
                .filter(|b| !b.archive && b.meta.max_time <= newest.saturating_sub(d))
                .map(|b| b.meta.ulid)
                .collect()
        }
        None => parse_ulids(&a.ulids)?,
    };
    if chosen.is_empty() {
        outln!("no block to archive");
    }
    for u in chosen {
        let t = Instant::now();
        let new = archive::archive_in_place(&lock, u, a.level).map_err(|e| e.to_string())?;
        report("archived", u, new, &a.db, t);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn unarchive(a: UnarchiveArgs) -> Result<ExitCode, String> {
    let (lock, blocks) = lock(&a.db)?;
    let chosen: Vec<Ulid> = if a.all {
        blocks
            .iter()
            .filter(|b| b.archive)
            .map(|b| b.meta.ulid)
            .collect()
    } else {
        parse_ulids(&a.ulids)?
    };
    if chosen.is_empty() {
        outln!("no archive block");
    }
    for u in chosen {
        let t = Instant::now();
        let new = archive::unarchive_in_place(&lock, u).map_err(|e| e.to_string())?;
        report("unarchived", u, new, &a.db, t);
    }
    Ok(ExitCode::SUCCESS)
}
