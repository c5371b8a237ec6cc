//! Prometheus' HTTP API conventions, shared by `tsdbctl query` and (later) the server: time and
//! duration parameters, the parameter checks of `/api/v1/query_range`, and the exact JSON bodies
//! of `/api/v1/query` and `/api/v1/query_range` for every result type. Expressions are evaluated
//! by the PromQL engine ([`crate::promql`]).

use crate::db::Db;
use crate::labels::Labels;
use crate::promql::{civil_from_days, Annotations, QueryError, QueryOptions, QueryResult, Value};
use std::fmt::Write;

/// Prometheus' default lookback delta (5 minutes).
pub const DEFAULT_LOOKBACK_MS: i64 = crate::promql::DEFAULT_LOOKBACK_MS;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParamError {
    #[error("cannot parse {0:?} to a valid timestamp (Unix seconds or RFC 3339)")]
    Time(String),
    #[error("cannot parse {0:?} to a valid duration")]
    Duration(String),
    #[error("cannot parse {0:?} to a size (an integer with a unit: B, KB, MB, GB, TB, PB, EB)")]
    Size(String),
}

/// A size in Prometheus' flag syntax (`--storage.tsdb.retention.size=512MB`): an integer and a
/// unit B, KB, MB, GB, TB, PB or EB, powers of 1024 as Prometheus reads them. Returns bytes.
pub fn parse_size(s: &str) -> Result<u64, ParamError> {
    let err = || ParamError::Size(s.to_string());
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (num, unit) = s.split_at(digits);
    let n: u64 = num.parse().map_err(|_| err())?;
    let shift = match unit.to_ascii_uppercase().as_str() {
        "B" => 0,
        "KB" => 10,
        "MB" => 20,
        "GB" => 30,
        "TB" => 40,
        "PB" => 50,
        "EB" => 60,
        _ => return Err(err()),
    };
    n.checked_mul(1u64 << shift).ok_or_else(err)
}

/// A time parameter: Unix seconds with optional fraction, or RFC 3339. Returns milliseconds.
pub fn parse_time(s: &str) -> Result<i64, ParamError> {
    let err = || ParamError::Time(s.to_string());
    if let Ok(f) = s.parse::<f64>() {
        if !f.is_finite() {
            return Err(err());
        }
        // Round to milliseconds as Prometheus does (seconds and nanoseconds, then to ms).
        let ms = (f * 1000.0).round();
        if ms.abs() > 9.2e18 {
            return Err(err());
        }
        return Ok(ms as i64);
    }
    parse_rfc3339(s).ok_or_else(err)
}

fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let frac = &s[start..i];
        let digits: String = frac.chars().chain("000".chars()).take(3).collect();
        ms = digits.parse().ok()?;
    }
    let offset_min = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        b'+' | b'-' if i + 6 == b.len() && b[i + 3] == b':' => {
            let sign = if b[i] == b'-' { -1 } else { 1 };
            sign * (num(i + 1..i + 3)? * 60 + num(i + 4..i + 6)?)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    Some(secs * 1000 + ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A time as RFC 3339 UTC with milliseconds (`2026-11-20T10:00:00.000Z`).
pub fn format_rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

/// A duration parameter: Prometheus' duration syntax (`1h30m`, `15s`, `500ms`, units y w d h m s ms)
/// or float seconds, as the HTTP API accepts for `step`. Returns milliseconds.
pub fn parse_duration(s: &str) -> Result<i64, ParamError> {
    let err = || ParamError::Duration(s.to_string());
    if let Ok(f) = s.parse::<f64>() {
        let ms = (f * 1000.0).round();
        if !f.is_finite() || ms.abs() > 9.2e18 {
            return Err(err());
        }
        return Ok(ms as i64);
    }
    let units: [(&str, i64); 7] = [
        ("ms", 1),
        ("s", 1000),
        ("m", 60_000),
        ("h", 3_600_000),
        ("d", 86_400_000),
        ("w", 604_800_000),
        ("y", 31_536_000_000),
    ];
    let mut rest = s;
    let mut total: i64 = 0;
    let mut last_rank = usize::MAX;
    if rest.is_empty() {
        return Err(err());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(err());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        // "ms" before "m"; units must appear from largest to smallest, each once.
        let (rank, (u, mult)) = units
            .iter()
            .enumerate()
            .find(|(_, (u, _))| rest.starts_with(u) && !(*u == "m" && rest.starts_with("ms")))
            .ok_or_else(err)?;
        if rank >= last_rank {
            return Err(err());
        }
        last_rank = rank;
        rest = &rest[u.len()..];
        total = n
            .checked_mul(*mult)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(err)?;
    }
    Ok(total)
}

/// One series of a query result: labels and (timestamp ms, value) points.
#[derive(Clone, Debug, PartialEq)]
pub struct ResultSeries {
    pub labels: Labels,
    pub points: Vec<(i64, f64)>,
}

/// Maximum points per series of a range query, as Prometheus' API enforces.
pub const MAX_RANGE_POINTS: i64 = 11_000;

/// Prometheus' API returns at most this many warnings and as many infos, then says how many it
/// left out (`annotations.AsStrings(query, 10, 10)` in `web/api/v1/api.go`).
pub const MAX_ANNOTATIONS: usize = 10;

/// Evaluates `expr` at instant `t` (milliseconds) with the PromQL engine.
pub fn query(db: &Db, expr: &str, t: i64, opts: &QueryOptions) -> Result<Value, QueryError> {
    Ok(query_annotated(db, expr, t, opts)?.value)
}

/// [`query`], with the warnings and infos of the evaluation.
pub fn query_annotated(
    db: &Db,
    expr: &str,
    t: i64,
    opts: &QueryOptions,
) -> Result<QueryResult, QueryError> {
    db.query_annotated(expr, t, opts)
}

/// Evaluates `expr` over `[start, end]` every `step` with the checks of Prometheus'
/// `/api/v1/query_range` handler.
pub fn query_range(
    db: &Db,
    expr: &str,
    start: i64,
    end: i64,
    step: i64,
    opts: &QueryOptions,
) -> Result<Value, QueryError> {
    Ok(query_range_annotated(db, expr, start, end, step, opts)?.value)
}

/// [`query_range`], with the warnings and infos of the evaluation.
pub fn query_range_annotated(
    db: &Db,
    expr: &str,
    start: i64,
    end: i64,
    step: i64,
    opts: &QueryOptions,
) -> Result<QueryResult, QueryError> {
    if end < start {
        return Err(QueryError::Eval(
            "end timestamp must not be before start time".into(),
        ));
    }
    if step <= 0 {
        return Err(QueryError::Eval(
            "zero or negative query resolution step widths are not accepted. Try a positive integer"
                .into(),
        ));
    }
    if (end - start) / step > MAX_RANGE_POINTS {
        return Err(QueryError::Eval(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into(),
        ));
    }
    db.query_range_annotated(expr, start, end, step, opts)
}

/// The series of a result as [`ResultSeries`] (a vector's samples become one-point series; a
/// scalar becomes a series without labels; a string has none).
pub fn result_series(v: &Value) -> Vec<ResultSeries> {
    match v {
        Value::Vector(s) => s
            .iter()
            .map(|s| ResultSeries {
                labels: s.labels.clone(),
                points: vec![(s.t, s.v)],
            })
            .collect(),
        Value::Matrix(m) => m
            .iter()
            .map(|s| ResultSeries {
                labels: s.labels.clone(),
                points: s.points.clone(),
            })
            .collect(),
        Value::Scalar { t, v } => vec![ResultSeries {
            labels: Labels::default(),
            points: vec![(*t, *v)],
        }],
        Value::String { .. } => vec![],
    }
}

/// The body of `/api/v1/query` or `/api/v1/query_range` for any result, byte for byte as
/// Prometheus writes it.
pub fn value_json(v: &Value) -> String {
    match v {
        Value::Vector(_) => vector_json(&result_series(v)),
        Value::Matrix(_) => matrix_json(&result_series(v)),
        Value::Scalar { t, v } => scalar_json(*t, *v),
        Value::String { t, s } => string_json(*t, s),
    }
}

/// The whole body of `/api/v1/query(_range)`: [`value_json`] with `"warnings"` and `"infos"`
/// beside `"data"`, each left out when empty and capped at [`MAX_ANNOTATIONS`] as Prometheus does.
pub fn response_json(v: &Value, a: &Annotations) -> String {
    let mut out = value_json(v);
    if a.is_empty() {
        return out;
    }
    out.pop(); // the body's closing brace
    for (field, list, kind) in [
        ("warnings", &a.warnings, "warning"),
        ("infos", &a.infos, "info"),
    ] {
        if list.is_empty() {
            continue;
        }
        let _ = write!(out, ",\"{field}\":[");
        for (i, s) in list.iter().take(MAX_ANNOTATIONS).enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_json_string(&mut out, s);
        }
        if list.len() > MAX_ANNOTATIONS {
            let more = format!(
                "{} more {kind} annotations omitted",
                list.len() - MAX_ANNOTATIONS
            );
            out.push(',');
            write_json_string(&mut out, &more);
        }
        out.push(']');
    }
    out.push('}');
    out
}

/// The body of `/api/v1/query` for a scalar: `"result":[time,"value"]`.
pub fn scalar_json(t: i64, v: f64) -> String {
    let mut out = String::from(r#"{"status":"success","data":{"resultType":"scalar","result":"#);
    write_point(&mut out, t, v);
    out.push_str("}}");
    out
}

/// The body of `/api/v1/query` for a string: `"result":[time,"text"]`.
pub fn string_json(t: i64, s: &str) -> String {
    let mut out = String::from(r#"{"status":"success","data":{"resultType":"string","result":["#);
    out.push_str(&format_time(t));
    out.push(',');
    write_json_string(&mut out, s);
    out.push_str("]}}");
    out
}

/// A sample value as Prometheus' API writes it: Go's `FormatFloat(v, 'f', -1, 64)`.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        // Rust's shortest round-trip formatting without exponent matches Go's 'f', -1.
        format!("{v}")
    }
}

/// A timestamp as the API writes it: seconds as a JSON number with up to 3 decimals.
pub fn format_time(t_ms: i64) -> String {
    format!("{}", t_ms as f64 / 1000.0)
}

/// Writes a JSON string escaped as Go's encoding/json does (HTML-safe: `<`, `>`, `&`, U+2028/9).
pub fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A label set as Go's `labels.Labels` marshals it: an object, names in order.
pub fn write_labels_json(out: &mut String, labels: &Labels) {
    out.push('{');
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_string(out, &l.name);
        out.push(':');
        write_json_string(out, &l.value);
    }
    out.push('}');
}

fn write_metric(out: &mut String, labels: &Labels) {
    out.push_str("{\"metric\":");
    write_labels_json(out, labels);
}

fn write_point(out: &mut String, t: i64, v: f64) {
    out.push('[');
    out.push_str(&format_time(t));
    out.push_str(",\"");
    out.push_str(&format_value(v));
    out.push_str("\"]");
}

/// The body of `/api/v1/query` for an instant vector.
pub fn vector_json(result: &[ResultSeries]) -> String {
    let mut out = String::from(r#"{"status":"success","data":{"resultType":"vector","result":["#);
    let mut first = true;
    for s in result {
        for &(t, v) in &s.points {
            if !first {
                out.push(',');
            }
            first = false;
            write_metric(&mut out, &s.labels);
            out.push_str(",\"value\":");
            write_point(&mut out, t, v);
            out.push('}');
        }
    }
    out.push_str("]}}");
    out
}

/// The body of `/api/v1/query_range` (a matrix).
pub fn matrix_json(result: &[ResultSeries]) -> String {
    let mut out = String::from(r#"{"status":"success","data":{"resultType":"matrix","result":["#);
    for (i, s) in result.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_metric(&mut out, &s.labels);
        out.push_str(",\"values\":[");
        for (j, &(t, v)) in s.points.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            write_point(&mut out, t, v);
        }
        out.push_str("]}");
    }
    out.push_str("]}}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_prometheus_units() {
        assert_eq!(parse_size("512MB").unwrap(), 512 << 20);
        assert_eq!(parse_size("1GB").unwrap(), 1 << 30);
        assert_eq!(parse_size("10b").unwrap(), 10);
        assert_eq!(parse_size("2TB").unwrap(), 2 << 40);
        for bad in ["", "MB", "1.5GB", "10", "10XB", "-1MB", "99999999999EB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("1700000000.123").unwrap(), 1_700_000_000_123);
        assert_eq!(parse_time("1700000000").unwrap(), 1_700_000_000_000);
        assert_eq!(
            parse_time("2026-11-20T10:00:00Z").unwrap(),
            1_795_168_800_000
        );
        assert_eq!(
            parse_time("2026-11-20T11:00:00.5+01:00").unwrap(),
            1_795_168_800_500
        );
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("NaN").is_err());
    }

    #[test]
    fn rfc3339_round_trips() {
        for ms in [0, 1_795_168_800_006, -1, 951_782_400_000, 4_102_444_799_999] {
            assert_eq!(parse_time(&format_rfc3339(ms)).unwrap(), ms);
        }
        assert_eq!(
            format_rfc3339(1_795_168_800_006),
            "2026-11-20T10:00:00.006Z"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s").unwrap(), 60_000);
        assert_eq!(parse_duration("1h30m").unwrap(), 5_400_000);
        assert_eq!(parse_duration("500ms").unwrap(), 500);
        assert_eq!(parse_duration("15").unwrap(), 15_000);
        assert_eq!(parse_duration("0.5").unwrap(), 500);
        assert!(parse_duration("1m1h").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn values_format_like_go() {
        assert_eq!(format_value(22.0), "22");
        assert_eq!(format_value(0.1), "0.1");
        assert_eq!(format_value(1e21), "1000000000000000000000");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_time(1_795_169_700_018), "1795169700.018");
        assert_eq!(format_time(1_795_169_700_000), "1795169700");
    }

    #[test]
    fn annotations_sit_beside_data() {
        let v = Value::Scalar { t: 1000, v: 1.0 };
        assert_eq!(
            response_json(&v, &Annotations::default()),
            scalar_json(1000, 1.0)
        );
        let a = Annotations {
            warnings: vec!["PromQL warning: w (1:1)".into()],
            infos: (0..12).map(|i| format!("PromQL info: \"{i}\"")).collect(),
        };
        let body = response_json(&v, &a);
        assert!(body.starts_with(
            r#"{"status":"success","data":{"resultType":"scalar","result":[1,"1"]},"warnings":["PromQL warning: w (1:1)"],"infos":["PromQL info: \"0\"","#
        ));
        assert!(body.ends_with(r#""PromQL info: \"9\"","2 more info annotations omitted"]}"#));
        serde_json::from_str::<serde_json::Value>(&body).unwrap();
    }

    #[test]
    fn json_bodies() {
        let r = vec![ResultSeries {
            labels: Labels::from_pairs(&[("__name__", "up"), ("a", "<x>")]),
            points: vec![(1000, 1.0), (2000, f64::INFINITY)],
        }];
        assert_eq!(
            matrix_json(&r),
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up","a":"\u003cx\u003e"},"values":[[1,"1"],[2,"+Inf"]]}]}}"#
        );
        assert_eq!(
            vector_json(&r[..0]),
            r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#
        );
        assert_eq!(
            scalar_json(1500, 2.5),
            r#"{"status":"success","data":{"resultType":"scalar","result":[1.5,"2.5"]}}"#
        );
        assert_eq!(
            string_json(1000, "a\"b"),
            r#"{"status":"success","data":{"resultType":"string","result":[1,"a\"b"]}}"#
        );
    }
}
