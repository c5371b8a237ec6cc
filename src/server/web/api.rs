//! The `/api/v1` handlers, as Prometheus 2.42's `web/api/v1/api.go` answers: parameters read
//! from the URL and from a POSTed form (form values first, as Go's `Request.Form`), the same
//! parameter checks in the same order, the same error types and status codes (`bad_data` 400,
//! `execution` 422, `canceled`/`timeout` 503, `internal` 500, `unavailable` 500), and the exact
//! query bodies of [`crate::api::response_json`].
//!
//! Exists to translate HTTP into calls of the query engine and the querier; evaluation runs on
//! blocking threads (the engine is CPU-bound, rayon inside) and is cancelled when the client
//! goes away.

use super::{Shared, WebState};
use crate::api::{parse_duration, parse_time, response_json, write_json_string};
use crate::labels::{parse_selector, Labels, Matcher};
use crate::promql::{QueryError, QueryOptions};
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Router};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Prometheus' `minTime` as milliseconds: the default `start` of series and label lookups
/// (`time.Unix(math.MinInt64/1000+62135596801, 0)`).
pub const MIN_TIME_MS: i64 = (i64::MIN / 1000 + 62_135_596_801) * 1000;
/// Prometheus' `maxTime` as milliseconds, the default `end`.
pub const MAX_TIME_MS: i64 = (i64::MAX / 1000 - 62_135_596_801) * 1000 + 999;
/// Entries of each `/api/v1/status/tsdb` list (Prometheus' `maxNumOfRecords`).
pub const TSDB_STATUS_TOP: usize = 10;

/// The `/api/v1` routes.
pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/metadata", get(metadata))
        .route("/api/v1/targets", get(targets))
        .route("/api/v1/targets/metadata", get(targets_metadata))
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .route("/api/v1/status/runtimeinfo", get(runtimeinfo))
        .route("/api/v1/status/config", get(config))
        .route("/api/v1/status/flags", get(flags))
        .route("/api/v1/status/tsdb", get(tsdb_status_handler))
        .route("/api/v1/status/walreplay", get(walreplay))
        .route("/api/v1/scrape_pools", get(scrape_pools))
        .route(
            "/api/v1/query_exemplars",
            get(query_exemplars).post(query_exemplars),
        )
        .route("/api/v1/format_query", get(format_query).post(format_query))
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/alertmanagers", get(alertmanagers))
}

/// `/api/v1/alertmanagers`: the notifier's Alertmanagers by URL, as Prometheus lists them.
async fn alertmanagers(State(ctx): State<Shared>) -> Response {
    let (active, dropped) = ctx
        .state
        .alertmanagers
        .as_ref()
        .map(|v| v.alertmanagers())
        .unwrap_or_default();
    let list = |urls: &[String]| {
        let mut out = String::from("[");
        for (i, u) in urls.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"url\":");
            crate::api::write_json_string(&mut out, u);
            out.push('}');
        }
        out.push(']');
        out
    };
    success(&format!(
        "{{\"activeAlertmanagers\":{},\"droppedAlertmanagers\":{}}}",
        list(&active),
        list(&dropped)
    ))
}

/// Parses PromQL for the endpoints that only need the syntax tree (the engine parses for
/// itself); errors as Prometheus' `line:column: parse error: ...` where the parser says where.
fn parse_promql(q: &str) -> Result<promql_parser::parser::Expr, ApiError> {
    promql_parser::parser::parse(q).map_err(|e| {
        let e = e.to_string();
        let msg = if e.contains("parse error") {
            e
        } else {
            format!("1:1: parse error: {e}")
        };
        ApiError::new(ErrorType::BadData, msg)
    })
}

async fn format_query(p: Params) -> Response {
    match parse_promql(p.get("query")) {
        Ok(expr) => {
            let mut out = String::new();
            write_json_string(&mut out, &expr.prettify());
            success(&out)
        }
        Err(e) => ApiError::param("query", e.message).into_response(),
    }
}

/// Exemplars are not stored: the answer of a Prometheus with exemplar storage off (an empty
/// list, or no content when the query selects no series), after the same parameter checks.
async fn query_exemplars(p: Params) -> Response {
    let run = || {
        let start = time_param(&p, "start", MIN_TIME_MS)?;
        let end = time_param(&p, "end", MAX_TIME_MS)?;
        if end < start {
            return Err(ApiError::new(
                ErrorType::BadData,
                "end timestamp must not be before start timestamp",
            ));
        }
        let expr = parse_promql(p.get("query"))?;
        struct HasSelector(bool);
        impl promql_parser::util::ExprVisitor for HasSelector {
            type Error = ();
            fn pre_visit(&mut self, e: &promql_parser::parser::Expr) -> Result<bool, ()> {
                use promql_parser::parser::Expr;
                if matches!(e, Expr::VectorSelector(_) | Expr::MatrixSelector(_)) {
                    self.0 = true;
                }
                Ok(!self.0)
            }
        }
        let mut v = HasSelector(false);
        let _ = promql_parser::util::walk_expr(&mut v, &expr);
        Ok(if v.0 {
            success("[]")
        } else {
            StatusCode::NO_CONTENT.into_response()
        })
    };
    run().unwrap_or_else(IntoResponse::into_response)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RuleGroupJson {
    name: String,
    file: String,
    rules: Vec<RuleJson>,
    #[serde(serialize_with = "go_json_f64")]
    interval: f64,
    limit: usize,
    #[serde(serialize_with = "go_json_f64")]
    evaluation_time: f64,
    last_evaluation: String,
}

#[derive(Serialize)]
#[serde(untagged)]
enum RuleJson {
    Alerting(AlertingRuleJson),
    Recording(RecordingRuleJson),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AlertingRuleJson {
    state: &'static str,
    name: String,
    query: String,
    #[serde(serialize_with = "go_json_f64")]
    duration: f64,
    #[serde(serialize_with = "go_json_f64")]
    keep_firing_for: f64,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    alerts: Vec<AlertJson>,
    health: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    last_error: String,
    #[serde(serialize_with = "go_json_f64")]
    evaluation_time: f64,
    last_evaluation: String,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RecordingRuleJson {
    name: String,
    query: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    health: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    last_error: String,
    #[serde(serialize_with = "go_json_f64")]
    evaluation_time: f64,
    last_evaluation: String,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AlertJson {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    state: &'static str,
    active_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_firing_since: Option<String>,
    value: String,
}

/// A float as Go's `encoding/json` writes it where it matters to clients: whole numbers without
/// a fraction (`15`, not `15.0`).
fn go_json_f64<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

/// Go's `strconv.FormatFloat(v, 'e', -1, 64)`: shortest digits, exponent with a sign and at
/// least two digits (`1.5e+02`), `NaN`, `+Inf`, `-Inf`.
pub fn go_float_e(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let s = format!("{v:e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let (sign, digits) = match exp.strip_prefix('-') {
        Some(d) => ('-', d),
        None => ('+', exp),
    };
    format!("{mantissa}e{sign}{digits:0>2}")
}

fn alert_json(a: &crate::rules::ActiveAlert) -> AlertJson {
    AlertJson {
        labels: label_map(&a.labels),
        annotations: label_map(&a.annotations),
        state: a.state.as_str(),
        active_at: go_time_json(Some(a.active_at_ms)),
        keep_firing_since: a.keep_firing_since_ms.map(|t| go_time_json(Some(t))),
        value: go_float_e(a.value),
    }
}

/// `/api/v1/rules` (Prometheus 2.42's `rules`): groups in file then name order, rules in their
/// order, `type=alert|record` keeping one kind.
async fn rules(State(ctx): State<Shared>, p: Params) -> Response {
    let kind = p.get("type").to_ascii_lowercase();
    let (alerting, recording) = match kind.as_str() {
        "" => (true, true),
        "alert" => (true, false),
        "record" => (false, true),
        other => {
            return ApiError::param("type", format!("not supported value {}", go_quote(other)))
                .into_response()
        }
    };
    use crate::rules::RuleView;
    let groups: Vec<RuleGroupJson> = ctx
        .state
        .rules
        .rule_groups()
        .into_iter()
        .map(|g| RuleGroupJson {
            name: g.name,
            file: g.file,
            rules: g
                .rules
                .into_iter()
                .filter_map(|r| match r {
                    RuleView::Alerting(a) if alerting => {
                        Some(RuleJson::Alerting(AlertingRuleJson {
                            state: a.state.as_str(),
                            name: a.name,
                            query: a.query,
                            duration: a.hold_ms as f64 / 1000.0,
                            keep_firing_for: a.keep_firing_for_ms as f64 / 1000.0,
                            labels: label_map(&a.labels),
                            annotations: label_map(&a.annotations),
                            alerts: a.alerts.iter().map(alert_json).collect(),
                            health: a.status.health.as_str(),
                            last_error: a.status.last_error.unwrap_or_default(),
                            evaluation_time: a.status.evaluation_seconds,
                            last_evaluation: go_time_json(a.status.last_evaluation_ms),
                            kind: "alerting",
                        }))
                    }
                    RuleView::Recording {
                        name,
                        query,
                        labels,
                        status,
                    } if recording => Some(RuleJson::Recording(RecordingRuleJson {
                        name,
                        query,
                        labels: label_map(&labels),
                        health: status.health.as_str(),
                        last_error: status.last_error.unwrap_or_default(),
                        evaluation_time: status.evaluation_seconds,
                        last_evaluation: go_time_json(status.last_evaluation_ms),
                        kind: "recording",
                    })),
                    _ => None,
                })
                .collect(),
            interval: g.interval_ms as f64 / 1000.0,
            limit: g.limit,
            evaluation_time: g.evaluation_seconds,
            last_evaluation: go_time_json(g.last_evaluation_ms),
        })
        .collect();
    #[derive(Serialize)]
    struct RuleDiscovery {
        groups: Vec<RuleGroupJson>,
    }
    success_ser(&RuleDiscovery { groups })
}

/// `/api/v1/alerts`: the pending and firing alerts of every alerting rule.
async fn alerts(State(ctx): State<Shared>) -> Response {
    use crate::rules::RuleView;
    let alerts: Vec<AlertJson> = ctx
        .state
        .rules
        .rule_groups()
        .iter()
        .flat_map(|g| g.rules.iter())
        .filter_map(|r| match r {
            RuleView::Alerting(a) => Some(a.alerts.iter().map(alert_json)),
            RuleView::Recording { .. } => None,
        })
        .flatten()
        .collect();
    #[derive(Serialize)]
    struct AlertDiscovery {
        alerts: Vec<AlertJson>,
    }
    success_ser(&AlertDiscovery { alerts })
}

/// The WAL segments replayed at open: first, last, and the last as the current one (replay is
/// over before the server starts).
async fn walreplay(State(ctx): State<Shared>) -> Response {
    let segs = crate::wal::segments(&ctx.state.db.dir().join("wal")).unwrap_or_default();
    let (min, max) = (
        segs.first().copied().unwrap_or(0),
        segs.last().copied().unwrap_or(0),
    );
    success(&format!(r#"{{"min":{min},"max":{max},"current":{max}}}"#))
}

async fn scrape_pools(State(ctx): State<Shared>) -> Response {
    let pools: BTreeSet<String> = ctx
        .state
        .scrape
        .targets()
        .0
        .into_iter()
        .map(|t| t.scrape_pool)
        .collect();
    let mut out = String::from(r#"{"scrapePools":"#);
    write_strings(&mut out, &pools);
    out.push('}');
    success(&out)
}

/// Prometheus' `errorType`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    Timeout,
    Canceled,
    Execution,
    BadData,
    Internal,
    Unavailable,
    NotFound,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Timeout => "timeout",
            ErrorType::Canceled => "canceled",
            ErrorType::Execution => "execution",
            ErrorType::BadData => "bad_data",
            ErrorType::Internal => "internal",
            ErrorType::Unavailable => "unavailable",
            ErrorType::NotFound => "not_found",
        }
    }

    /// `respondError`'s status codes (`unavailable` falls to its default, 500).
    pub fn status(self) -> StatusCode {
        match self {
            ErrorType::BadData => StatusCode::BAD_REQUEST,
            ErrorType::Execution => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::Canceled | ErrorType::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::NotFound => StatusCode::NOT_FOUND,
            ErrorType::Internal | ErrorType::Unavailable => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An API error: rendered as `{"status":"error","errorType":...,"error":...}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub kind: ErrorType,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorType, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
        }
    }

    /// Prometheus' `invalidParamError`: `bad_data`, `invalid parameter "name": why`.
    pub fn param(name: &str, why: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            ErrorType::BadData,
            format!("invalid parameter {}: {why}", go_quote(name)),
        )
    }

    pub fn body(&self) -> String {
        let mut out = String::from(r#"{"status":"error","errorType":""#);
        out.push_str(self.kind.as_str());
        out.push_str(r#"","error":"#);
        write_json_string(&mut out, &self.message);
        out.push('}');
        out
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.kind.status(), self.body())
    }
}

pub(crate) fn json_response(code: StatusCode, body: String) -> Response {
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `{"status":"success","data":DATA}` with `data` already JSON.
pub(crate) fn success(data: &str) -> Response {
    json_response(
        StatusCode::OK,
        format!(r#"{{"status":"success","data":{data}}}"#),
    )
}

fn success_ser<T: Serialize>(data: &T) -> Response {
    match serde_json::to_string(data) {
        Ok(s) => success(&s),
        Err(e) => ApiError::new(ErrorType::Internal, e.to_string()).into_response(),
    }
}

pub use crate::gostr::quote as go_quote;

/// The request's parameters: a POSTed (or PUT) form's, then the URL's, as Go's `Request.Form`.
#[derive(Clone, Debug, Default)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// The first value of `name`, or "" (Go's `FormValue`).
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Params, ApiError> {
        let bad = |e: String| {
            ApiError::new(
                ErrorType::BadData,
                format!("error parsing form values: {e}"),
            )
        };
        let Query(url): Query<Vec<(String, String)>> =
            Query::try_from_uri(req.uri()).map_err(|e| bad(e.body_text()))?;
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                ct.split(';')
                    .next()
                    .is_some_and(|m| m.trim() == "application/x-www-form-urlencoded")
            });
        let mut params = Vec::new();
        if is_form && matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH) {
            let Form(body): Form<Vec<(String, String)>> = Form::from_request(req, state)
                .await
                .map_err(|e| bad(e.body_text()))?;
            params = body;
        }
        params.extend(url);
        Ok(Params(params))
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Prometheus' `parseTime` error text.
fn time_error(s: &str) -> String {
    format!("cannot parse {} to a valid timestamp", go_quote(s))
}

/// A required time (`start`, `end` of a range query).
fn required_time(p: &Params, name: &str) -> Result<i64, ApiError> {
    let s = p.get(name);
    parse_time(s).map_err(|_| ApiError::param(name, time_error(s)))
}

/// Prometheus' `parseTimeParam`: `default` when absent.
pub(crate) fn time_param(p: &Params, name: &str, default: i64) -> Result<i64, ApiError> {
    let s = p.get(name);
    if s.is_empty() {
        return Ok(default);
    }
    parse_time(s).map_err(|_| {
        ApiError::param(
            name,
            format!("Invalid time value for '{name}': {}", time_error(s)),
        )
    })
}

fn duration_param(p: &Params, name: &str) -> Result<i64, ApiError> {
    let s = p.get(name);
    parse_duration(s).map_err(|_| {
        ApiError::param(
            name,
            format!("cannot parse {} to a valid duration", go_quote(s)),
        )
    })
}

/// Prometheus' `parseMatchersParam`: every `match[]` a selector with a matcher that does not
/// match the empty string.
pub(crate) fn matcher_sets(values: &[&str]) -> Result<Vec<Vec<Matcher>>, String> {
    values
        .iter()
        .map(|s| parse_selector(s).map_err(|e| selector_error(s, &e)))
        .collect()
}

/// Prometheus' message for a selector that does not parse (`ParseMetricSelector` runs the PromQL
/// parser): the PromQL parser's error where the text is not PromQL at all, else ours (valid
/// PromQL that is not a series selector, such as `rate(x[5m])`).
fn selector_error(s: &str, e: &crate::labels::SelectorError) -> String {
    match crate::promql::parse_expr(s) {
        Err(promql) => promql,
        Ok(_) => format!("1:{}: parse error: {}", e.column, e.message),
    }
}

/// Sets a flag when dropped: a request whose client went away drops its handler's future, which
/// cancels the evaluation running on a blocking thread.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs `f` on a blocking thread; a panic there becomes an internal error.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(ApiError::new(ErrorType::Internal, e.to_string())))
}

/// Counts a query in `prometheus_engine_queries` until dropped (also when the request is dropped
/// while waiting for a slot).
struct Running(prometheus_client::metrics::gauge::Gauge);

impl Running {
    fn start(g: &prometheus_client::metrics::gauge::Gauge) -> Running {
        g.inc();
        Running(g.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.dec();
    }
}

enum Kind {
    Instant { t: i64 },
    Range { start: i64, end: i64, step: i64 },
}

/// The request's `timeout` (ms), capped by `--query.timeout`.
fn timeout(ctx: &Shared, p: &Params) -> Result<Duration, ApiError> {
    let max = ctx.opts.query_timeout_ms.max(0);
    let ms = if p.get("timeout").is_empty() {
        max
    } else {
        duration_param(p, "timeout")?.clamp(0, max)
    };
    Ok(Duration::from_millis(ms as u64))
}

async fn query(State(ctx): State<Shared>, p: Params) -> Response {
    let run = async {
        let t = time_param(&p, "time", now_ms())?;
        let timeout = timeout(&ctx, &p)?;
        Ok::<_, ApiError>(evaluate(&ctx, p.get("query"), Kind::Instant { t }, timeout).await)
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

async fn query_range(State(ctx): State<Shared>, p: Params) -> Response {
    let run = async {
        let start = required_time(&p, "start")?;
        let end = required_time(&p, "end")?;
        if end < start {
            return Err(ApiError::param(
                "end",
                "end timestamp must not be before start time",
            ));
        }
        let step = duration_param(&p, "step")?;
        if step <= 0 {
            return Err(ApiError::param(
                "step",
                "zero or negative query resolution step widths are not accepted. Try a positive integer",
            ));
        }
        if end.saturating_sub(start) / step > crate::api::MAX_RANGE_POINTS {
            return Err(ApiError::new(
                ErrorType::BadData,
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
            ));
        }
        let timeout = timeout(&ctx, &p)?;
        Ok(evaluate(
            &ctx,
            p.get("query"),
            Kind::Range { start, end, step },
            timeout,
        )
        .await)
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// Evaluates on a blocking thread and renders the body or the error as Prometheus does.
async fn evaluate(ctx: &Shared, expr: &str, kind: Kind, timeout: Duration) -> Response {
    let cancel = Arc::new(AtomicBool::new(false));
    let _guard = CancelOnDrop(cancel.clone());
    let opts = QueryOptions {
        lookback_ms: ctx.opts.lookback_ms,
        max_samples: ctx.opts.max_samples,
        timeout: Some(timeout),
        cancel: Some(cancel),
        ..QueryOptions::default()
    };
    let (db, expr) = (ctx.state.db.clone(), expr.to_string());
    let (label, instant) = match kind {
        Kind::Instant { .. } => ("instant", true),
        Kind::Range { .. } => ("range", false),
    };
    let metrics = ctx.metrics.clone();
    // Waiting for a slot counts as running, as in Prometheus' gauge ("executed or waiting").
    let running = Running::start(&metrics.queries_running);
    let Ok(slot) = ctx.query_slots.clone().acquire_owned().await else {
        return ApiError::new(ErrorType::Unavailable, "the server is shutting down")
            .into_response();
    };
    // Accounting and rendering happen on the blocking thread: it runs to the end even when the
    // client went away and this future was dropped (the engine then stops at `cancel`), so the
    // running-queries gauge and the outcome (`canceled`) stay right.
    let out = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let started = Instant::now();
        let result = match kind {
            Kind::Instant { t } => crate::api::query_annotated(&db, &expr, t, &opts),
            Kind::Range { start, end, step } => {
                crate::api::query_range_annotated(&db, &expr, start, end, step, &opts)
            }
        }
        .map_err(|e| query_error(e, instant));
        drop(running);
        let outcome = match &result {
            Ok(_) => "success",
            Err(e) => e.kind.as_str(),
        };
        metrics.observe_query(label, outcome, started.elapsed().as_secs_f64());
        result.map(|r| response_json(&r.value, &r.annotations))
    })
    .await;
    match out {
        Ok(Ok(body)) => json_response(StatusCode::OK, body),
        Ok(Err(e)) => e.into_response(),
        Err(e) => ApiError::new(ErrorType::Internal, e.to_string()).into_response(),
    }
}

/// Prometheus' `returnAPIError` and the parse-error cases of `query` (an invalid `query`
/// parameter) and `queryRange` (plain `bad_data`).
fn query_error(e: QueryError, instant: bool) -> ApiError {
    match e {
        QueryError::Parse(m) if instant => ApiError::param("query", m),
        QueryError::Parse(m) => ApiError::new(ErrorType::BadData, m),
        QueryError::Timeout => ApiError::new(ErrorType::Timeout, e.to_string()),
        QueryError::Canceled => ApiError::new(ErrorType::Canceled, e.to_string()),
        QueryError::Storage(_) => ApiError::new(ErrorType::Internal, e.to_string()),
        QueryError::Eval(_) | QueryError::TooManySamples => {
            ApiError::new(ErrorType::Execution, e.to_string())
        }
    }
}

pub(crate) use crate::api::write_labels_json as write_labels;

fn write_strings<'a>(out: &mut String, items: impl IntoIterator<Item = &'a String>) {
    out.push('[');
    for (i, s) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_string(out, s);
    }
    out.push(']');
}

async fn series(State(ctx): State<Shared>, p: Params) -> Response {
    let run = async {
        let matches = p.all("match[]");
        if matches.is_empty() {
            return Err(ApiError::new(
                ErrorType::BadData,
                "no match[] parameter provided",
            ));
        }
        let start = time_param(&p, "start", MIN_TIME_MS)?;
        let end = time_param(&p, "end", MAX_TIME_MS)?;
        let sets = matcher_sets(&matches).map_err(|e| ApiError::param("match[]", e))?;
        let db = ctx.state.db.clone();
        let found = blocking(move || {
            let q = db.querier(start, end);
            let mut all: BTreeSet<Labels> = BTreeSet::new();
            for set in &sets {
                let s = q
                    .select(set)
                    .map_err(|e| ApiError::new(ErrorType::Internal, e.to_string()))?;
                all.extend(s.into_iter().map(|s| s.labels().clone()));
            }
            Ok(all)
        })
        .await?;
        let mut out = String::from("[");
        for (i, l) in found.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_labels(&mut out, l);
        }
        out.push(']');
        Ok(success(&out))
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// The label names (or one label's values, `Some(name)`) of the series the matcher sets select
/// over `[start, end]`; without sets, of every series in the blocks and head the range touches.
async fn label_lookup(
    ctx: &Shared,
    p: &Params,
    value_of: Option<String>,
) -> Result<Vec<String>, ApiError> {
    let start = time_param(p, "start", MIN_TIME_MS)?;
    let end = time_param(p, "end", MAX_TIME_MS)?;
    let sets = matcher_sets(&p.all("match[]")).map_err(|e| ApiError::new(ErrorType::BadData, e))?;
    let db = ctx.state.db.clone();
    blocking(move || {
        let q = db.querier(start, end);
        if sets.is_empty() {
            return Ok(match &value_of {
                Some(name) => q.label_values(name),
                None => q.label_names(),
            });
        }
        let mut out: BTreeSet<String> = BTreeSet::new();
        for set in &sets {
            let found = q
                .select(set)
                .map_err(|e| ApiError::new(ErrorType::Execution, e.to_string()))?;
            for s in found {
                match &value_of {
                    Some(name) => out.extend(s.labels().get(name).map(str::to_string)),
                    None => out.extend(s.labels().iter().map(|l| l.name.clone())),
                }
            }
        }
        Ok(out.into_iter().collect())
    })
    .await
}

async fn labels(State(ctx): State<Shared>, p: Params) -> Response {
    match label_lookup(&ctx, &p, None).await {
        Ok(names) => {
            let mut out = String::new();
            write_strings(&mut out, &names);
            success(&out)
        }
        Err(e) => e.into_response(),
    }
}

/// Prometheus' `model.LabelNameRE`: `^[a-zA-Z_][a-zA-Z0-9_]*$`.
fn valid_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

async fn label_values(State(ctx): State<Shared>, Path(name): Path<String>, p: Params) -> Response {
    if !valid_label_name(&name) {
        return ApiError::new(
            ErrorType::BadData,
            format!("invalid label name: {}", go_quote(&name)),
        )
        .into_response();
    }
    match label_lookup(&ctx, &p, Some(name)).await {
        Ok(values) => {
            let mut out = String::new();
            write_strings(&mut out, &values);
            success(&out)
        }
        Err(e) => e.into_response(),
    }
}

#[derive(Serialize, PartialEq, Eq, Hash)]
struct MetadataEntry {
    #[serde(rename = "type")]
    kind: String,
    help: String,
    unit: String,
}

/// The metadata endpoints' `limit`: -1 when absent (no limit), Prometheus' `strconv.Atoi` error.
fn metadata_limit(p: &Params) -> Result<i64, ApiError> {
    match p.get("limit") {
        "" => Ok(-1),
        s => s
            .parse()
            .map_err(|_| ApiError::new(ErrorType::BadData, "limit must be a number")),
    }
}

async fn metadata(State(ctx): State<Shared>, p: Params) -> Response {
    let limit = match metadata_limit(&p) {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    let metric = p.get("metric");
    let mut by_name: BTreeMap<String, Vec<MetadataEntry>> = BTreeMap::new();
    for (name, m) in ctx.state.scrape.metadata() {
        if !metric.is_empty() && name != metric {
            continue;
        }
        let entry = MetadataEntry {
            kind: m.kind,
            help: m.help,
            unit: m.unit,
        };
        let list = by_name.entry(name).or_default();
        if !list.contains(&entry) {
            list.push(entry);
        }
    }
    if limit >= 0 {
        by_name = by_name.into_iter().take(limit as usize).collect();
    }
    success_ser(&by_name)
}

#[derive(Serialize)]
struct TargetMetadataEntry {
    target: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    metric: String,
    #[serde(rename = "type")]
    kind: String,
    help: String,
    unit: String,
}

/// Prometheus' `targetMetadata`: the metadata of each active target that `match_target`
/// selects, all of it or only `metric`'s; `limit` is checked before each target, so a target's
/// whole list is kept once started (as Prometheus does).
async fn targets_metadata(State(ctx): State<Shared>, p: Params) -> Response {
    let limit = match metadata_limit(&p) {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    let matchers = match p.get("match_target") {
        "" => Vec::new(),
        s => match parse_selector(s) {
            Ok(m) => m,
            Err(e) => {
                return ApiError::param("match_target", selector_error(s, &e)).into_response()
            }
        },
    };
    let metric = p.get("metric");
    let (mut active, _) = ctx.state.scrape.targets();
    active.sort_by(|a, b| a.scrape_pool.cmp(&b.scrape_pool));
    let mut res: Vec<TargetMetadataEntry> = Vec::new();
    for t in &active {
        if limit >= 0 && res.len() as i64 >= limit {
            break;
        }
        if !matchers
            .iter()
            .all(|m| m.matches(t.labels.get(&m.name).unwrap_or("")))
        {
            continue;
        }
        let target = label_map(&t.labels);
        for (name, m) in t.metadata.iter() {
            if !metric.is_empty() && name != metric {
                continue;
            }
            res.push(TargetMetadataEntry {
                target: target.clone(),
                metric: if metric.is_empty() {
                    name.clone()
                } else {
                    String::new()
                },
                kind: m.kind.clone(),
                help: m.help.clone(),
                unit: m.unit.clone(),
            });
        }
    }
    success_ser(&res)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ActiveTarget {
    discovered_labels: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    scrape_pool: String,
    scrape_url: String,
    global_url: String,
    last_error: String,
    last_scrape: String,
    last_scrape_duration: f64,
    health: &'static str,
    scrape_interval: String,
    scrape_timeout: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DroppedTargetJson {
    discovered_labels: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TargetDiscovery {
    active_targets: Vec<ActiveTarget>,
    dropped_targets: Vec<DroppedTargetJson>,
}

fn label_map(l: &Labels) -> BTreeMap<String, String> {
    l.iter()
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect()
}

/// Go's `time.Time` in JSON (RFC 3339 with nanoseconds, trailing zeros dropped), UTC; Go's zero
/// time for `None`.
pub fn go_time_json(ms: Option<i64>) -> String {
    let Some(ms) = ms else {
        return "0001-01-01T00:00:00Z".to_string();
    };
    let s = crate::api::format_rfc3339(ms);
    // `....SSSZ`: drop trailing zeros of the fraction, and the dot if none is left.
    let (body, _) = s.split_at(s.len() - 1);
    let trimmed = body.trim_end_matches('0').trim_end_matches('.');
    format!("{trimmed}Z")
}

async fn targets(State(ctx): State<Shared>, p: Params) -> Response {
    let state = p.get("state").to_ascii_lowercase();
    let pool = p.get("scrapePool");
    let show_active = matches!(state.as_str(), "" | "any" | "active");
    let show_dropped = matches!(state.as_str(), "" | "any" | "dropped");
    let (active, dropped) = ctx.state.scrape.targets();
    let mut res = TargetDiscovery {
        active_targets: Vec::new(),
        dropped_targets: Vec::new(),
    };
    if show_active {
        let mut active: Vec<_> = active
            .into_iter()
            .filter(|t| pool.is_empty() || t.scrape_pool == pool)
            .collect();
        // Prometheus lists pools sorted by name, each pool's targets in its own order.
        active.sort_by(|a, b| a.scrape_pool.cmp(&b.scrape_pool));
        res.active_targets = active
            .into_iter()
            .map(|t| ActiveTarget {
                discovered_labels: label_map(&t.discovered_labels),
                labels: label_map(&t.labels),
                scrape_pool: t.scrape_pool,
                scrape_url: t.scrape_url,
                global_url: t.global_url,
                last_error: t.last_error,
                last_scrape: go_time_json(t.last_scrape_ms),
                last_scrape_duration: t.last_scrape_duration_s,
                health: t.health.as_str(),
                scrape_interval: model_duration(t.scrape_interval.0),
                scrape_timeout: model_duration(t.scrape_timeout.0),
            })
            .collect();
    }
    if show_dropped {
        res.dropped_targets = dropped
            .into_iter()
            .filter(|t| {
                pool.is_empty() || t.discovered_labels.get("job").is_some_and(|j| j == pool)
            })
            .map(|t| DroppedTargetJson {
                discovered_labels: label_map(&t.discovered_labels),
            })
            .collect();
    }
    success_ser(&res)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BuildInfo {
    version: &'static str,
    revision: String,
    branch: &'static str,
    build_user: &'static str,
    build_date: &'static str,
    go_version: &'static str,
}

async fn buildinfo() -> Response {
    success_ser(&BuildInfo {
        version: super::COMPATIBLE_VERSION,
        revision: format!("tsdb {}", env!("CARGO_PKG_VERSION")),
        branch: "",
        build_user: "",
        build_date: "",
        go_version: "",
    })
}

#[derive(Serialize)]
struct RuntimeInfo {
    #[serde(rename = "startTime")]
    start_time: String,
    #[serde(rename = "CWD")]
    cwd: String,
    #[serde(rename = "reloadConfigSuccess")]
    reload_config_success: bool,
    #[serde(rename = "lastConfigTime")]
    last_config_time: String,
    #[serde(rename = "corruptionCount")]
    corruption_count: i64,
    #[serde(rename = "goroutineCount")]
    goroutine_count: usize,
    #[serde(rename = "GOMAXPROCS")]
    gomaxprocs: usize,
    #[serde(rename = "GOGC")]
    gogc: String,
    #[serde(rename = "GODEBUG")]
    godebug: String,
    #[serde(rename = "storageRetention")]
    storage_retention: String,
}

fn system_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Prometheus' `storageRetention`: `15d`, `512MiB`, or both joined by ` or `.
pub fn retention_string(retention_ms: i64, retention_bytes: u64) -> String {
    let mut parts = Vec::new();
    if retention_ms != 0 {
        parts.push(model_duration(retention_ms));
    }
    if retention_bytes != 0 {
        parts.push(base2_bytes(retention_bytes));
    }
    parts.join(" or ")
}

/// Prometheus' `model.Duration.String()`: largest units first, years and weeks only when they
/// divide the duration exactly (`15d`, not `2w1d`), `0s` for zero.
pub fn model_duration(ms: i64) -> String {
    crate::config::Duration(ms).to_string()
}

/// alecthomas/units' `Base2Bytes.String()`: largest whole units first (`1GiB512MiB`).
fn base2_bytes(mut n: u64) -> String {
    const UNITS: [(&str, u64); 7] = [
        ("EiB", 1 << 60),
        ("PiB", 1 << 50),
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("B", 1),
    ];
    let mut out = String::new();
    for (u, size) in UNITS {
        if n >= size {
            let _ = write!(out, "{}{u}", n / size);
            n %= size;
        }
    }
    out
}

async fn runtimeinfo(State(ctx): State<Shared>) -> Response {
    let st: &WebState = &ctx.state;
    let last = *st.last_reload.read().unwrap_or_else(|e| e.into_inner());
    let opts = st.db.options();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    success_ser(&RuntimeInfo {
        start_time: go_time_json(Some(system_ms(st.start_time))),
        cwd: std::env::current_dir()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        reload_config_success: last.success,
        last_config_time: go_time_json(Some(system_ms(last.time) / 1000 * 1000)),
        corruption_count: 0,
        goroutine_count: tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        gomaxprocs: threads,
        gogc: String::new(),
        godebug: String::new(),
        storage_retention: retention_string(opts.retention_ms, opts.retention_bytes),
    })
}

#[derive(Serialize)]
struct ConfigJson {
    yaml: String,
}

async fn config(State(ctx): State<Shared>) -> Response {
    let yaml = ctx
        .state
        .config_yaml
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    success_ser(&ConfigJson { yaml })
}

async fn flags(State(ctx): State<Shared>) -> Response {
    success_ser(&ctx.state.flags)
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct TsdbStat {
    pub name: String,
    pub value: u64,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HeadStats {
    pub num_series: u64,
    pub num_label_pairs: u64,
    pub chunk_count: u64,
    pub min_time: i64,
    pub max_time: i64,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TsdbStatus {
    pub head_stats: HeadStats,
    pub series_count_by_metric_name: Vec<TsdbStat>,
    pub label_value_count_by_label_name: Vec<TsdbStat>,
    pub memory_in_bytes_by_label_name: Vec<TsdbStat>,
    pub series_count_by_label_value_pair: Vec<TsdbStat>,
}

/// The `count` largest, largest first (ties by name: Prometheus leaves their order unspecified).
fn top(mut v: Vec<TsdbStat>) -> Vec<TsdbStat> {
    v.sort_by(|a, b| b.value.cmp(&a.value).then_with(|| a.name.cmp(&b.name)));
    v.truncate(TSDB_STATUS_TOP);
    v
}

/// `/api/v1/status/tsdb` over the head's index, as Prometheus' `MemPostings.Stats("__name__")`.
pub fn tsdb_status(db: &crate::db::DbCore) -> TsdbStatus {
    let head = db.head();
    let (mut metrics, mut names, mut bytes, mut pairs) = (vec![], vec![], vec![], vec![]);
    let mut num_pairs = 0u64;
    {
        let ix = head.index();
        for name in ix.label_names() {
            if name.is_empty() {
                continue;
            }
            let values = ix.label_values(&name);
            names.push(TsdbStat {
                name: name.clone(),
                value: values.len() as u64,
            });
            num_pairs += values.len() as u64;
            let mut size = 0u64;
            for v in values {
                let n = ix
                    .postings_for_matchers(&[Matcher::equal(name.clone(), v.clone())])
                    .len() as u64;
                size += v.len() as u64;
                if name == crate::labels::METRIC_NAME {
                    metrics.push(TsdbStat {
                        name: v.clone(),
                        value: n,
                    });
                }
                pairs.push(TsdbStat {
                    name: format!("{name}={v}"),
                    value: n,
                });
            }
            bytes.push(TsdbStat { name, value: size });
        }
    }
    let chunk_count = head
        .all_series()
        .iter()
        .map(|s| {
            let c = s.lock();
            c.closed.len() as u64 + u64::from(c.head.is_some())
        })
        .sum();
    // An empty head reports, as Prometheus' after opening, the newest block's end as both
    // bounds (its minimum valid time); without blocks, the empty range (MaxInt64, MinInt64).
    let (min, max) = head.time_range().unwrap_or_else(|| {
        db.blocks()
            .iter()
            .map(|b| b.meta().max_time)
            .max()
            .map_or((i64::MAX, i64::MIN), |t| (t, t))
    });
    TsdbStatus {
        head_stats: HeadStats {
            num_series: head.num_series(),
            num_label_pairs: num_pairs,
            chunk_count,
            min_time: min,
            max_time: max,
        },
        series_count_by_metric_name: top(metrics),
        label_value_count_by_label_name: top(names),
        memory_in_bytes_by_label_name: top(bytes),
        series_count_by_label_value_pair: top(pairs),
    }
}

async fn tsdb_status_handler(State(ctx): State<Shared>) -> Response {
    let db = ctx.state.db.clone();
    match blocking(move || Ok(tsdb_status(&db))).await {
        Ok(s) => success_ser(&s),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_times_are_prometheus_min_and_max() {
        assert_eq!(MIN_TIME_MS, -9_223_309_901_257_974_000);
        assert_eq!(MAX_TIME_MS, 9_223_309_901_257_974_999);
    }

    #[test]
    fn go_times() {
        assert_eq!(go_time_json(None), "0001-01-01T00:00:00Z");
        assert_eq!(
            go_time_json(Some(1_795_168_800_000)),
            "2026-11-20T10:00:00Z"
        );
        assert_eq!(
            go_time_json(Some(1_795_168_800_500)),
            "2026-11-20T10:00:00.5Z"
        );
        assert_eq!(
            go_time_json(Some(1_795_168_800_006)),
            "2026-11-20T10:00:00.006Z"
        );
    }

    #[test]
    fn retention_strings() {
        assert_eq!(retention_string(15 * 86_400_000, 0), "15d");
        assert_eq!(retention_string(0, 512 << 20), "512MiB");
        assert_eq!(retention_string(86_400_000, 1 << 30), "1d or 1GiB");
        assert_eq!(retention_string(0, 0), "");
        assert_eq!(model_duration(14 * 86_400_000), "2w");
        assert_eq!(model_duration(90_000), "1m30s");
        assert_eq!(model_duration(1500), "1s500ms");
    }

    #[test]
    fn quoting_and_errors() {
        assert_eq!(go_quote("a\"b\n\x01"), r#""a\"b\n\x01""#);
        let e = ApiError::param("start", time_error("x"));
        assert_eq!(
            e.body(),
            r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"start\": cannot parse \"x\" to a valid timestamp"}"#
        );
        assert_eq!(e.kind.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            ErrorType::Unavailable.status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn label_names_validated() {
        assert!(valid_label_name("job"));
        assert!(valid_label_name("_a1"));
        assert!(!valid_label_name("1a"));
        assert!(!valid_label_name("a-b"));
        assert!(!valid_label_name(""));
    }

    #[test]
    fn params_form_first() {
        let p = Params(vec![
            ("a".into(), "form".into()),
            ("a".into(), "url".into()),
        ]);
        assert_eq!(p.get("a"), "form");
        assert_eq!(p.all("a"), vec!["form", "url"]);
        assert_eq!(p.get("b"), "");
    }

    #[test]
    fn status_counts() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::Db::open(dir.path(), crate::Options::default()).unwrap();
        let mut app = db.appender();
        for (name, job) in [("up", "a"), ("up", "b"), ("x", "a")] {
            let l = Labels::from_pairs(&[("__name__", name), ("job", job)]);
            app.append(&l, 1000, 1.0).unwrap();
        }
        app.commit().unwrap();
        let s = tsdb_status(&db);
        assert_eq!(s.head_stats.num_series, 3);
        assert_eq!(s.head_stats.num_label_pairs, 4);
        assert_eq!(s.head_stats.chunk_count, 3);
        assert_eq!((s.head_stats.min_time, s.head_stats.max_time), (1000, 1000));
        assert_eq!(
            s.series_count_by_metric_name,
            vec![
                TsdbStat {
                    name: "up".into(),
                    value: 2
                },
                TsdbStat {
                    name: "x".into(),
                    value: 1
                }
            ]
        );
        assert_eq!(s.memory_in_bytes_by_label_name[0].name, "__name__");
        assert_eq!(s.memory_in_bytes_by_label_name[0].value, 3);
        // A tie (2 and 2): by name.
        assert_eq!(s.series_count_by_label_value_pair[0].name, "__name__=up");
        assert_eq!(s.series_count_by_label_value_pair[1].name, "job=a");
    }
}
