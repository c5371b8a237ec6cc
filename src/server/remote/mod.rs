//! Remote write 1.0, in and out (<https://prometheus.io/docs/concepts/remote_write_spec/>;
//! Prometheus 2.42's `storage/remote/` is the reference for every behaviour and metric name).
//!
//! - In: [`receiver_router`] serves `POST /api/v1/write`; [`receive`] appends one request into the
//!   database in one transaction ([`receiver`]).
//! - Out: [`RemoteWriter`] runs one queue per `remote_write` entry ([`queue`]). A queue is fed
//!   from the WAL, not from the appender: it tails `<data_dir>/wal` ([`tail`]) with a ref → labels
//!   map built from series records (the checkpoint first), shards samples by series over
//!   `min_shards..=max_shards` (resharded as Prometheus does), sends batches of
//!   `max_samples_per_send` or after `batch_send_deadline`, retries 5xx, 429 and network errors
//!   with exponential backoff, and saves how far it has sent (`<data_dir>/remote/<queue>/position`)
//!   — so a restart resumes where it stopped and a receiver that is down loses nothing while
//!   the WAL keeps the segments the queue still needs ([`crate::DbCore::hold_wal_segments`]).
//! - The wire format: [`proto`] (hand-written prost messages; protobuf + snappy block format).
//!
//! The remote writer never blocks appends: the WAL is its buffer. What it must never do is move
//! its saved position past a sample that was not acknowledged (or dropped by a 4xx, which no
//! retry can fix).

pub mod proto;
mod queue;
pub mod receiver;
mod tail;
mod writer;

pub use proto::{decode_write_request, encode_write_request, fuzz_decode_write_request};
pub use receiver::{append_request, receive, receiver_router, ReceiveStats};
pub use writer::{QueueStatus, RemoteWriter, DEFAULT_FLUSH_DEADLINE};

use std::path::PathBuf;

/// Errors of remote write, in and out.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The body is not snappy-compressed protobuf of a `WriteRequest`.
    #[error("decoding remote-write request: {0}")]
    Decode(String),
    /// A request the storage cannot take whatever the retry (invalid labels, histograms).
    #[error("invalid remote-write request: {0}")]
    BadRequest(String),
    /// A sample the head refused (Prometheus' `storage.ErrOutOfOrderSample` and friends).
    #[error("{reason} (series {series}, timestamp {timestamp})")]
    Rejected {
        reason: &'static str,
        series: String,
        timestamp: i64,
    },
    /// The storage failed to append or commit.
    #[error("appending remote-write samples: {0}")]
    Append(String),
    /// A `remote_write` entry that cannot run.
    #[error("remote_write config: {0}")]
    Config(String),
    /// Reading the WAL failed (I/O, or damage in a segment that is not the live one).
    #[error("reading the WAL: {0}")]
    Wal(#[from] crate::wal::WalError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl RemoteError {
    /// The HTTP status Prometheus 2.42's write handler answers for this error: 400 for a request
    /// that no retry can fix, 500 otherwise.
    pub fn http_status(&self) -> u16 {
        match self {
            RemoteError::Decode(_) | RemoteError::BadRequest(_) | RemoteError::Rejected { .. } => {
                400
            }
            _ => 500,
        }
    }
}

/// One log line in logfmt, on stderr (the crate has no logging framework; the server's own log
/// lines look the same).
macro_rules! log {
    ($level:literal, $queue:expr, $($arg:tt)*) => {
        eprintln!(
            "level={} component=remote_write remote_name={} msg={:?}",
            $level,
            $queue,
            format!($($arg)*)
        )
    };
}
pub(crate) use log;
