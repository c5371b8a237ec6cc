//! tsdb: an embedded time-series database in Prometheus' on-disk format.
//!
//! Open a data directory with [`Db::open`], append through a transaction ([`Db::appender`]), read
//! through a [`Querier`]. The module tree follows the data: `exposition` parses what `/metrics`
//! endpoints serve; `chunk` encodes samples (Gorilla XOR, byte-identical to Prometheus); `wal` is
//! Prometheus' write-ahead log; `head` holds recent series in memory with their inverted `index`;
//! `db` composes them into a directory with crash recovery; `ingest` loads exposition text into a
//! `Db` in parallel. Storage modules know nothing of the layers above them.

pub mod api;
pub mod backfill;
pub mod block;
pub mod chunk;
pub mod compact;
#[cfg(feature = "server")]
pub mod config;
pub mod db;
pub mod exposition;
pub mod gostr;
pub mod head;
pub mod index;
pub mod ingest;
pub mod labels;
pub mod promql;
pub mod querier;
pub mod relabel;
#[cfg(feature = "server")]
pub mod rules;
#[cfg(feature = "server")]
pub mod server;
pub mod wal;

pub use db::{CompactionStatus, Db, DbCore, DbError, FsyncPolicy, OpenReport, Options};
pub use querier::{Querier, Series};
