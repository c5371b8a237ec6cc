//! The admin API (`/api/v1/admin/tsdb/{delete_series,clean_tombstones,snapshot}`, POST or PUT),
//! as Prometheus 2.42 serves it: without `--web.enable-admin-api` every call answers
//! `unavailable` "admin APIs disabled" (status 500); with it, deletions and tombstone cleaning
//! answer 204, a snapshot answers its directory name under `<data>/snapshots/`.
//!
//! A snapshot is Prometheus' `DB.Snapshot`: every block hard-linked into the snapshot directory
//! (files are immutable, so links cost no space), and unless `skip_head` the head's whole range
//! written there as one more block — the live database is left as it was.

use super::api::{blocking, matcher_sets, time_param, ApiError, ErrorType, Params};
use super::Shared;
use crate::api::write_json_string;
use crate::db::DbCore;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};

/// The directory under the data directory that holds snapshots.
pub const SNAPSHOTS_DIR: &str = "snapshots";

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/api/v1/admin/tsdb/delete_series",
            post(delete_series).put(delete_series),
        )
        .route(
            "/api/v1/admin/tsdb/clean_tombstones",
            post(clean_tombstones).put(clean_tombstones),
        )
        .route("/api/v1/admin/tsdb/snapshot", post(snapshot).put(snapshot))
}

fn check_enabled(ctx: &Shared) -> Result<(), ApiError> {
    if ctx.opts.enable_admin_api {
        Ok(())
    } else {
        Err(ApiError::new(ErrorType::Unavailable, "admin APIs disabled"))
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorType::Internal, e.to_string())
}

async fn delete_series(State(ctx): State<Shared>, p: Params) -> Response {
    let run = async {
        check_enabled(&ctx)?;
        let matches = p.all("match[]");
        if matches.is_empty() {
            return Err(ApiError::new(
                ErrorType::BadData,
                "no match[] parameter provided",
            ));
        }
        let start = time_param(&p, "start", super::api::MIN_TIME_MS)?;
        let end = time_param(&p, "end", super::api::MAX_TIME_MS)?;
        let sets = matcher_sets(&matches).map_err(|e| ApiError::param("match[]", e))?;
        let db = ctx.state.db.clone();
        blocking(move || {
            for set in &sets {
                db.delete(set, start, end).map_err(internal)?;
            }
            Ok(())
        })
        .await?;
        Ok::<_, ApiError>(StatusCode::NO_CONTENT.into_response())
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

async fn clean_tombstones(State(ctx): State<Shared>) -> Response {
    let run = async {
        check_enabled(&ctx)?;
        let db = ctx.state.db.clone();
        blocking(move || db.clean_tombstones(&mut |_| {}).map_err(internal)).await?;
        Ok::<_, ApiError>(StatusCode::NO_CONTENT.into_response())
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

async fn snapshot(State(ctx): State<Shared>, p: Params) -> Response {
    let run = async {
        check_enabled(&ctx)?;
        let skip_head = match p.get("skip_head") {
            "" => false,
            s => parse_bool(s).ok_or_else(|| {
                ApiError::param(
                    "skip_head",
                    format!(
                        "unable to parse boolean: strconv.ParseBool: parsing {}: invalid syntax",
                        super::api::go_quote(s)
                    ),
                )
            })?,
        };
        let name = snapshot_name(super::api::now_ms());
        let db = ctx.state.db.clone();
        let n = name.clone();
        blocking(move || {
            let dir = db.dir().join(SNAPSHOTS_DIR).join(&n);
            write_snapshot(&db, &dir, !skip_head)
        })
        .await?;
        let mut data = String::from(r#"{"name":"#);
        write_json_string(&mut data, &name);
        data.push('}');
        Ok::<_, ApiError>(super::api::success(&data))
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// Prometheus' snapshot name: `20060102T150405Z` (UTC) and 16 random hex digits.
fn snapshot_name(now_ms: i64) -> String {
    let t = crate::api::format_rfc3339(now_ms);
    // `2026-11-25T23:59:59.123Z` → `20261125T235959Z`.
    let compact: String = t
        .chars()
        .take(19)
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .collect();
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i64(now_ms);
    // Go's rand.Int63: non-negative.
    format!("{compact}Z-{:016x}", h.finish() >> 1)
}

/// Writes a snapshot of `db` into `dir` (created): blocks hard-linked, the head as one block
/// when `with_head`.
pub fn write_snapshot(db: &DbCore, dir: &Path, with_head: bool) -> Result<(), ApiError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| internal(format!("create snapshot directory: {}: {e}", dir.display())))?;
    for b in db.blocks() {
        let src = b.dir();
        let Some(name) = src.file_name() else {
            continue;
        };
        link_tree(src, &dir.join(name))
            .map_err(|e| internal(format!("create snapshot: {}: {e}", src.display())))?;
    }
    if with_head {
        if let Some((mint, maxt)) = db.head().time_range() {
            crate::compact::write_head_block(dir, db.head(), mint, maxt.saturating_add(1))
                .map_err(|e| internal(format!("create snapshot: head: {e}")))?;
        }
    }
    Ok(())
}

/// Recreates the directory tree `src` at `dst` with hard links to its files.
fn link_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dst)?;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let to: PathBuf = dst.join(e.file_name());
        if e.file_type()?.is_dir() {
            link_tree(&e.path(), &to)?;
        } else {
            std::fs::hard_link(e.path(), &to)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Labels;

    #[test]
    fn names_and_bools() {
        let n = snapshot_name(1_795_168_800_006);
        assert!(n.starts_with("20261120T100000Z-"), "{n}");
        assert_eq!(n.len(), "20261120T100000Z-".len() + 16);
        assert_eq!(parse_bool("True"), Some(true));
        assert_eq!(parse_bool("0"), Some(false));
        assert_eq!(parse_bool("yes"), None);
    }

    #[test]
    fn snapshot_holds_blocks_and_head() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::Db::open(
            dir.path(),
            crate::Options::default().background_compaction(false),
        )
        .unwrap();
        let l = Labels::from_pairs(&[("__name__", "m")]);
        let mut app = db.appender();
        let hour = 3_600_000;
        for i in 0..(5 * 60) {
            app.append(&l, i * 60_000, i as f64).unwrap();
        }
        app.commit().unwrap();
        assert!(!db.compact_head().unwrap().is_empty());
        let snap = dir.path().join("snap");
        write_snapshot(&db, &snap, true).unwrap();
        let snapped = crate::Db::open(&snap, crate::Options::default().read_only(true)).unwrap();
        assert_eq!(snapped.blocks().len(), db.blocks().len() + 1);
        let q = snapped.querier(0, 5 * hour);
        let s = q
            .select(&[crate::labels::Matcher::equal("__name__", "m")])
            .unwrap();
        assert_eq!(s[0].samples().count(), 300);
        drop(q);
        drop(snapped);
        let only_blocks = dir.path().join("snap2");
        write_snapshot(&db, &only_blocks, false).unwrap();
        let snapped =
            crate::Db::open(&only_blocks, crate::Options::default().read_only(true)).unwrap();
        assert_eq!(snapped.blocks().len(), db.blocks().len());
    }
}
