//! The remote-write receiver: `POST /api/v1/write` appends a request into the database in one
//! transaction, as Prometheus 2.42's `storage/remote/write_handler.go` does with
//! `--web.enable-remote-write-receiver`.
//!
//! Status codes are 2.42's: 204 on success; 400 when the body does not decode and when a sample is
//! out of order, a duplicate (same timestamp, other value) or out of bounds — a bad request, so
//! that the sender drops it instead of retrying forever; 500 for storage failures (the sender
//! retries). The whole request is rolled back on the first rejected sample, as 2.42 does.
//! Where 2.42 answers 500 but the request itself is at fault (an empty label set, a label name
//! twice, native histograms, which this storage does not hold) we answer 400: a retry cannot
//! succeed.
//!
//! Like 2.42 the handler does not insist on `Content-Encoding: snappy`, `Content-Type:
//! application/x-protobuf` or `X-Prometheus-Remote-Write-Version` (2.42 ignores them): a body that
//! is not snappy-compressed protobuf fails to decode and is a 400 either way.

use super::proto::{self, WriteRequest};
use super::RemoteError;
use crate::head::{AppendError, Reject};
use crate::labels::{Label, Labels};
use crate::Db;
use std::sync::Arc;

/// Largest request body accepted, compressed (axum's default of 2 MiB is too small for large
/// batches; VictoriaMetrics' default limit is 32 MiB).
pub const MAX_BODY_BYTES: usize = 32 << 20;

/// What a received request added.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReceiveStats {
    /// Series (`TimeSeries` entries) in the request.
    pub series: u64,
    /// Samples now in the head.
    pub appended: u64,
    /// Samples equal to their series' newest (same timestamp and value): accepted, not stored.
    pub duplicates_ignored: u64,
    /// Samples a concurrent commit made out of order between staging and commit (counted and
    /// dropped, as Prometheus' commit does).
    pub rejected_at_commit: u64,
    /// Exemplars in the request (not stored: the storage has no exemplars; 2.42 without exemplar
    /// storage drops them likewise).
    pub exemplars_ignored: u64,
    /// Metadata entries in the request (not stored).
    pub metadata_ignored: u64,
}

/// Appends a write request (the snappy-compressed protobuf body) into `db` in one transaction.
/// Errors map to HTTP codes with [`RemoteError::http_status`].
pub fn receive(db: &Db, snappy_body: &[u8]) -> Result<ReceiveStats, RemoteError> {
    let req = proto::decode_write_request(snappy_body)?;
    append_request(db, &req)
}

/// Appends a decoded request (see [`receive`]).
pub fn append_request(db: &Db, req: &WriteRequest) -> Result<ReceiveStats, RemoteError> {
    let mut stats = ReceiveStats {
        series: req.timeseries.len() as u64,
        metadata_ignored: req.metadata.len() as u64,
        ..ReceiveStats::default()
    };
    let mut app = db.appender();
    let mut staged = 0u64;
    for ts in &req.timeseries {
        stats.exemplars_ignored += ts.exemplars.len() as u64;
        if !ts.histograms.is_empty() {
            app.rollback();
            return Err(RemoteError::BadRequest(format!(
                "series {}: native histogram samples are not supported by this storage",
                labels_text(&ts.labels)
            )));
        }
        if ts.samples.is_empty() {
            continue;
        }
        let labels = match to_labels(&ts.labels) {
            Ok(l) => l,
            Err(e) => {
                app.rollback();
                return Err(e);
            }
        };
        let mut id = None;
        for s in &ts.samples {
            let r = match id {
                None => app.append(&labels, s.timestamp, s.value).map(|i| {
                    id = Some(i);
                }),
                Some(i) => app.append_id(i, s.timestamp, s.value),
            };
            match r {
                Ok(()) => staged += 1,
                Err(AppendError::Rejected(reason)) => {
                    app.rollback();
                    return Err(RemoteError::Rejected {
                        reason: reject_text(reason),
                        series: labels.to_string(),
                        timestamp: s.timestamp,
                    });
                }
                Err(AppendError::EmptyLabels) => {
                    app.rollback();
                    return Err(RemoteError::BadRequest("empty label set".into()));
                }
                Err(e @ AppendError::UnknownSeries(_)) => {
                    app.rollback();
                    return Err(RemoteError::Append(e.to_string()));
                }
            }
        }
    }
    let cs = app
        .commit()
        .map_err(|e| RemoteError::Append(e.to_string()))?;
    stats.appended = cs.appended;
    stats.rejected_at_commit = cs.rejected.total();
    stats.duplicates_ignored = staged.saturating_sub(cs.appended + cs.rejected.total());
    Ok(stats)
}

/// Prometheus' error texts (`storage.ErrOutOfOrderSample` etc.).
fn reject_text(r: Reject) -> &'static str {
    match r {
        Reject::OutOfOrder => "out of order sample",
        Reject::Duplicate => "duplicate sample for timestamp",
        Reject::OutOfBounds => "out of bounds",
    }
}

/// A label set from the wire: empty values dropped (a label with an empty value is no label),
/// then at least one label and no name twice, as 2.42's head appender checks.
fn to_labels(wire: &[proto::Label]) -> Result<Labels, RemoteError> {
    let mut v: Vec<Label> = wire
        .iter()
        .filter(|l| !l.value.is_empty())
        .map(|l| Label::new(l.name.as_str(), l.value.as_str()))
        .collect();
    if v.is_empty() {
        return Err(RemoteError::BadRequest("empty labelset".into()));
    }
    v.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(w) = v.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(RemoteError::BadRequest(format!(
            "label name \"{}\" is not unique",
            w[0].name
        )));
    }
    if let Some(l) = v.iter().find(|l| l.name.is_empty()) {
        return Err(RemoteError::BadRequest(format!(
            "empty label name (value {:?})",
            l.value
        )));
    }
    Ok(Labels::from_sorted_unchecked(v))
}

fn labels_text(wire: &[proto::Label]) -> String {
    let pairs: Vec<String> = wire
        .iter()
        .map(|l| format!("{}={:?}", l.name, l.value))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

/// Receiver metrics (no Prometheus 2.42 equivalent beyond its generic HTTP metrics).
#[derive(Clone)]
struct ReceiverMetrics {
    requests: prometheus_client::metrics::family::Family<
        Vec<(String, String)>,
        prometheus_client::metrics::counter::Counter,
    >,
    samples: prometheus_client::metrics::counter::Counter,
    duplicates: prometheus_client::metrics::counter::Counter,
}

#[derive(Clone)]
struct ReceiverState {
    db: Arc<Db>,
    metrics: ReceiverMetrics,
}

/// `POST /api/v1/write` as an axum router, for the web layer to merge under its auth and TLS.
/// Registers `tsdb_remote_write_requests_total{code}`,
/// `tsdb_remote_write_received_samples_total` and `tsdb_remote_write_duplicate_samples_total`.
pub fn receiver_router(
    db: Arc<Db>,
    registry: &mut prometheus_client::registry::Registry,
) -> axum::Router {
    use axum::routing::post;
    let metrics = ReceiverMetrics {
        requests: Default::default(),
        samples: Default::default(),
        duplicates: Default::default(),
    };
    registry.register(
        "tsdb_remote_write_requests",
        "Remote-write requests received on /api/v1/write, by HTTP status code",
        metrics.requests.clone(),
    );
    registry.register(
        "tsdb_remote_write_received_samples",
        "Samples appended from remote-write requests",
        metrics.samples.clone(),
    );
    registry.register(
        "tsdb_remote_write_duplicate_samples",
        "Samples received that equal their series' newest (same timestamp and value): accepted, not stored again",
        metrics.duplicates.clone(),
    );
    axum::Router::new()
        .route("/api/v1/write", post(write_handler))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(ReceiverState { db, metrics })
}

async fn write_handler(
    axum::extract::State(state): axum::extract::State<ReceiverState>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let db = state.db.clone();
    // Appending takes the WAL lock and may fsync: off the async workers.
    let result = tokio::task::spawn_blocking(move || receive(&db, &body)).await;
    let (status, text) = match result {
        Ok(Ok(stats)) => {
            state.metrics.samples.inc_by(stats.appended);
            state.metrics.duplicates.inc_by(stats.duplicates_ignored);
            (StatusCode::NO_CONTENT, String::new())
        }
        Ok(Err(e)) => (
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            format!("{e}\n"),
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("remote write append task failed: {e}\n"),
        ),
    };
    state
        .metrics
        .requests
        .get_or_create(&vec![("code".to_string(), status.as_u16().to_string())])
        .inc();
    if status == StatusCode::NO_CONTENT {
        status.into_response()
    } else {
        (status, text).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Matcher;
    use crate::server::remote::proto::{Sample, TimeSeries};

    fn series(pairs: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
        TimeSeries {
            labels: pairs
                .iter()
                .map(|(n, v)| proto::Label {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            samples: samples
                .iter()
                .map(|&(timestamp, value)| Sample { value, timestamp })
                .collect(),
            exemplars: Vec::new(),
            histograms: Vec::new(),
        }
    }

    fn body(ts: Vec<TimeSeries>) -> Vec<u8> {
        let mut out = Vec::new();
        proto::encode_write_request(
            &WriteRequest {
                timeseries: ts,
                metadata: Vec::new(),
            },
            &mut out,
        );
        out
    }

    fn open() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(
            dir.path(),
            crate::Options::default()
                .fsync(crate::FsyncPolicy::Never)
                .background_compaction(false),
        )
        .unwrap();
        (dir, db)
    }

    #[test]
    fn receive_appends_in_one_transaction() {
        let (_d, db) = open();
        let b = body(vec![
            series(
                &[("__name__", "up"), ("job", "a")],
                &[(1000, 1.0), (2000, 0.0)],
            ),
            series(
                &[("job", "b"), ("__name__", "up"), ("x", "")],
                &[(1000, 5.5)],
            ),
        ]);
        let st = receive(&db, &b).unwrap();
        assert_eq!(st.appended, 3);
        let q = db.querier(0, 10_000);
        let got = q.select(&[Matcher::equal("__name__", "up")]).unwrap();
        assert_eq!(got.len(), 2);
        let b_samples: Vec<_> = got[1].samples().collect();
        assert_eq!(b_samples, vec![(1000, 5.5)]);
        assert_eq!(got[1].labels().get("x"), None);
        // Each series' newest sample again (same timestamp and value): accepted, nothing stored.
        let again = body(vec![
            series(&[("__name__", "up"), ("job", "a")], &[(2000, 0.0)]),
            series(&[("job", "b"), ("__name__", "up")], &[(1000, 5.5)]),
        ]);
        let st = receive(&db, &again).unwrap();
        assert_eq!((st.appended, st.duplicates_ignored), (0, 2));
    }

    #[test]
    fn out_of_order_is_400_and_rolls_back_the_request() {
        let (_d, db) = open();
        receive(
            &db,
            &body(vec![series(&[("__name__", "m")], &[(5000, 1.0)])]),
        )
        .unwrap();
        let b = body(vec![
            series(&[("__name__", "other")], &[(1000, 1.0)]),
            series(&[("__name__", "m")], &[(4000, 1.0)]),
        ]);
        let e = receive(&db, &b).unwrap_err();
        assert_eq!(e.http_status(), 400, "{e}");
        assert!(e.to_string().contains("out of order sample"), "{e}");
        let q = db.querier(0, 10_000);
        assert!(q
            .select(&[Matcher::equal("__name__", "other")])
            .unwrap()
            .is_empty());
        let dup = body(vec![series(&[("__name__", "m")], &[(5000, 2.0)])]);
        let e = receive(&db, &dup).unwrap_err();
        assert_eq!(e.http_status(), 400);
        assert!(e.to_string().contains("duplicate sample"), "{e}");
    }

    #[test]
    fn bad_input_is_400() {
        let (_d, db) = open();
        for (b, what) in [
            (b"garbage".to_vec(), "snappy"),
            (
                body(vec![series(&[("a", "")], &[(1, 1.0)])]),
                "empty labelset",
            ),
            (
                body(vec![series(&[("a", "1"), ("a", "2")], &[(1, 1.0)])]),
                "not unique",
            ),
        ] {
            let e = receive(&db, &b).unwrap_err();
            assert_eq!(e.http_status(), 400, "{e}");
            assert!(e.to_string().contains(what), "{e} lacks {what}");
        }
        let mut ts = series(&[("__name__", "h")], &[]);
        ts.histograms.push(proto::Histogram { timestamp: 1 });
        let e = receive(&db, &body(vec![ts])).unwrap_err();
        assert_eq!(e.http_status(), 400);
    }
}
