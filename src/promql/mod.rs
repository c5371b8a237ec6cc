//! The PromQL engine: evaluates expressions over a [`Db`] the way Prometheus 3 does.
//!
//! Parsing is `promql-parser` (GreptimeDB's); this module evaluates its AST. Semantics follow
//! Prometheus' `promql/engine.go` and `promql/functions.go` (current main, 3.x): range and lookback
//! windows are left-open, `.` in a regex matches a newline, the metric name is dropped at the end of
//! evaluation (delayed `__name__` removal), and the arithmetic (Kahan summation, rate
//! extrapolation, quantiles) is carried over operation for operation so results agree to the bit.
//!
//! Evaluation is step-wise like Prometheus' range evaluation: every instant-vector node yields, for
//! each output series, one optional value per step. An instant query is a range query of one step.
//! Work that is independent per series (selector decoding, range-vector functions) or per group
//! (aggregations) runs on rayon's pool when there is enough of it (small queries, such as most
//! rules', stay on the calling thread); the order of floating-point operations within a series or
//! group is Prometheus' order, so results do not depend on the number of threads.
//!
//! Native histograms are not supported (the storage holds floats only).
//!
//! Parser gaps (`promql-parser` 0.11.1): its regex matchers are compiled without `(?s)`, so the
//! engine recompiles every matcher itself through [`crate::labels::Matcher`], which has the
//! Prometheus 3 semantics; it panics on a number used as an out-of-range duration (`x offset Inf`),
//! so parsing runs under `catch_unwind` and that becomes a parse error; it drops error positions,
//! which `parse_error` recovers.

mod annotations;
mod eval;
mod functions;

pub(crate) use functions::civil_from_days;
mod parse_error;
pub mod series_notation;

use crate::db::Db;
use crate::labels::Labels;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

pub use annotations::Annotations;
pub use eval::format_labels_go;

/// Parses a PromQL expression (syntax only), with the parser's panics on some duration
/// literals turned into errors — for callers that validate expressions before evaluating them
/// (rule files). Errors read as Prometheus': `line:col: parse error: what`.
pub fn parse_expr(input: &str) -> Result<promql_parser::parser::Expr, String> {
    parse_error::parse(input).map_err(|m| parse_error::describe(input, &m))
}

/// Prometheus' default lookback delta.
pub const DEFAULT_LOOKBACK_MS: i64 = 5 * 60 * 1000;
/// Prometheus' default `--query.max-samples`.
pub const DEFAULT_MAX_SAMPLES: usize = 50_000_000;
/// Prometheus' default subquery step when none is given (the global evaluation interval).
pub const DEFAULT_SUBQUERY_STEP_MS: i64 = 60_000;
/// Prometheus' limit on the points of a range query per series.
pub const MAX_POINTS_PER_SERIES: i64 = 11_000;

/// Engine settings, with Prometheus' defaults.
#[derive(Clone, Debug)]
pub struct QueryOptions {
    pub lookback_ms: i64,
    /// Maximum samples held in memory at once by one query.
    pub max_samples: usize,
    /// Abort the query after this long.
    pub timeout: Option<Duration>,
    /// Set to true (from any thread) to cancel a running query.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Step of subqueries without an explicit step.
    pub default_subquery_step_ms: i64,
    /// Loops with less work than this (series × steps, or samples to decode) run on the calling
    /// thread rather than on rayon's pool, whose wake-up costs more than small loops do. Rule
    /// evaluation sets `usize::MAX`: many small queries, run concurrently by group, as Prometheus
    /// runs each on one goroutine. Results are the same whatever the value.
    pub parallel_min_work: usize,
}

impl Default for QueryOptions {
    fn default() -> QueryOptions {
        QueryOptions {
            lookback_ms: DEFAULT_LOOKBACK_MS,
            max_samples: DEFAULT_MAX_SAMPLES,
            timeout: Some(Duration::from_secs(120)),
            cancel: None,
            default_subquery_step_ms: DEFAULT_SUBQUERY_STEP_MS,
            parallel_min_work: crate::querier::par_min_work(),
        }
    }
}

/// One element of an instant vector.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    /// Milliseconds.
    pub t: i64,
    pub v: f64,
}

/// One series of a range vector or range-query result.
#[derive(Clone, Debug, PartialEq)]
pub struct RangeSeries {
    pub labels: Labels,
    /// (milliseconds, value), in time order.
    pub points: Vec<(i64, f64)>,
}

/// A query result.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Vector(Vec<Sample>),
    Matrix(Vec<RangeSeries>),
    Scalar { t: i64, v: f64 },
    String { t: i64, s: String },
}

impl Value {
    /// Prometheus' `resultType`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
            Value::Scalar { .. } => "scalar",
            Value::String { .. } => "string",
        }
    }
}

/// A query's result with its annotations (the `warnings` and `infos` of Prometheus' API).
#[derive(Clone, Debug, PartialEq)]
pub struct QueryResult {
    pub value: Value,
    pub annotations: Annotations,
}

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// `line:column: parse error: what`, as Prometheus words them.
    #[error("{0}")]
    Parse(String),
    #[error("{0}")]
    Eval(String),
    #[error("query processing would load too many samples into memory in query execution")]
    TooManySamples,
    #[error("query timed out in expression evaluation")]
    Timeout,
    #[error("query was canceled in expression evaluation")]
    Canceled,
    #[error("storage: {0}")]
    Storage(#[from] crate::db::DbError),
}

/// An expression parsed once for many evaluations, as Prometheus parses a rule's expression when
/// its file loads: recording and alerting rules evaluate theirs at every interval, and parsing
/// was 3.4% of a rule evaluation's instructions. A syntax error is kept and returned by each
/// evaluation, as [`Db::query_with`] would return it.
#[derive(Debug)]
pub struct PreparedQuery {
    expr: String,
    ast: Result<promql_parser::parser::Expr, String>,
}

impl PreparedQuery {
    pub fn new(expr: &str) -> PreparedQuery {
        let ast = eval::parse(expr).map_err(|e| e.to_string());
        PreparedQuery {
            expr: expr.to_string(),
            ast,
        }
    }

    /// The expression's text.
    pub fn expr(&self) -> &str {
        &self.expr
    }
}

impl Db {
    /// [`Db::query_annotated`] of a prepared expression: the same result without parsing again.
    pub fn query_prepared(
        &self,
        q: &PreparedQuery,
        t: i64,
        opts: &QueryOptions,
    ) -> Result<QueryResult, QueryError> {
        match &q.ast {
            Ok(ast) => eval::run_parsed(self, &q.expr, ast, t, t, 1, false, opts),
            Err(e) => Err(QueryError::Parse(e.clone())),
        }
    }

    /// Evaluates `expr` at `t` (milliseconds) with default options.
    ///
    /// ```
    /// use tsdb::{Db, Options, labels::Labels, promql::Value};
    /// let dir = tempfile::tempdir().unwrap();
    /// let db = Db::open(dir.path(), Options::default()).unwrap();
    /// let mut app = db.appender();
    /// app.append(&Labels::from_pairs(&[("__name__", "up"), ("job", "a")]), 0, 1.0).unwrap();
    /// app.commit().unwrap();
    /// match db.query("sum(up) * 2", 10_000).unwrap() {
    ///     Value::Vector(v) => assert_eq!(v[0].v, 2.0),
    ///     other => panic!("{other:?}"),
    /// }
    /// ```
    pub fn query(&self, expr: &str, t: i64) -> Result<Value, QueryError> {
        self.query_with(expr, t, &QueryOptions::default())
    }

    /// [`Db::query`] with options.
    pub fn query_with(&self, expr: &str, t: i64, opts: &QueryOptions) -> Result<Value, QueryError> {
        Ok(self.query_annotated(expr, t, opts)?.value)
    }

    /// [`Db::query_with`], also returning the warnings and infos Prometheus would report.
    pub fn query_annotated(
        &self,
        expr: &str,
        t: i64,
        opts: &QueryOptions,
    ) -> Result<QueryResult, QueryError> {
        eval::run(self, expr, t, t, 1, false, opts)
    }

    /// Evaluates `expr` at every `step` (milliseconds) from `start` to `end` inclusive; the result
    /// is a matrix sorted by labels (scalars become a series without labels).
    pub fn query_range(
        &self,
        expr: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<Value, QueryError> {
        self.query_range_with(expr, start, end, step, &QueryOptions::default())
    }

    /// [`Db::query_range`] with options.
    pub fn query_range_with(
        &self,
        expr: &str,
        start: i64,
        end: i64,
        step: i64,
        opts: &QueryOptions,
    ) -> Result<Value, QueryError> {
        Ok(self
            .query_range_annotated(expr, start, end, step, opts)?
            .value)
    }

    /// [`Db::query_range_with`], also returning the warnings and infos Prometheus would report.
    pub fn query_range_annotated(
        &self,
        expr: &str,
        start: i64,
        end: i64,
        step: i64,
        opts: &QueryOptions,
    ) -> Result<QueryResult, QueryError> {
        if step <= 0 {
            return Err(QueryError::Eval(
                "zero or negative query resolution step widths are not accepted".into(),
            ));
        }
        if end < start {
            return Err(QueryError::Eval(
                "end timestamp must not be before start time".into(),
            ));
        }
        eval::run(self, expr, start, end, step, true, opts)
    }
}

#[cfg(test)]
mod tests;

/// Fuzz body: evaluates arbitrary bytes as a query (instant and range) over a small fixed
/// database with tight limits. Must never panic; errors are fine.
#[doc(hidden)]
pub fn fuzz_query(data: &[u8]) {
    use std::sync::OnceLock;
    static DB: OnceLock<Option<(tempfile::TempDir, Db)>> = OnceLock::new();
    let Ok(expr) = std::str::from_utf8(data) else {
        return;
    };
    let Some((_, db)) = DB.get_or_init(fuzz_db) else {
        return;
    };
    let opts = QueryOptions {
        max_samples: 200_000,
        timeout: Some(Duration::from_secs(2)),
        ..QueryOptions::default()
    };
    let _ = db.query_with(expr, 600_000, &opts);
    let _ = db.query_range_with(expr, 0, 1_200_000, 60_000, &opts);
}

fn fuzz_db() -> Option<(tempfile::TempDir, Db)> {
    use crate::labels::Labels;
    let dir = tempfile::tempdir().ok()?;
    let db = Db::open(
        dir.path(),
        crate::Options::default().fsync(crate::FsyncPolicy::Never),
    )
    .ok()?;
    let mut app = db.appender();
    for (i, le) in ["0.1", "1", "+Inf"].iter().enumerate() {
        for job in ["a", "b"] {
            let l = Labels::from_pairs(&[("__name__", "h_bucket"), ("job", job), ("le", le)]);
            for k in 0..80i64 {
                app.append(&l, k * 15_000, (k * (i as i64 + 1)) as f64)
                    .ok()?;
            }
            let g = Labels::from_pairs(&[("__name__", "g"), ("job", job), ("i", le)]);
            for k in 0..80i64 {
                let v = if k == 40 {
                    f64::from_bits(crate::chunk::STALE_NAN_BITS)
                } else {
                    ((k * 7919) % 97) as f64 - 40.0
                };
                app.append(&g, k * 15_000 + 7, v).ok()?;
            }
        }
    }
    app.commit().ok()?;
    Some((dir, db))
}
