//! `/federate`: the latest sample of every series the `match[]` selectors pick, within the
//! lookback window, in the text exposition format 0.0.4 — as Prometheus 2.42's `web/federate.go`
//! writes it: one `untyped` family per metric name, sample timestamps, stale markers left out,
//! the external labels added to series that lack them, and `instance=""` added when neither
//! the series nor the external labels have an `instance` (so that the federating server's
//! `honor_labels: true` keeps the series apart from its own target's).
//!
//! Exists so that another Prometheus can federate from `tsdbctl serve` unchanged.

use super::api::{matcher_sets, now_ms, Params};
use super::Shared;
use crate::labels::{Labels, METRIC_NAME};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::collections::BTreeMap;

/// The content type of the text exposition format 0.0.4 (Go's `expfmt.FmtText`).
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Prometheus' stale marker: a NaN with this bit pattern.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

pub(crate) fn routes() -> Router<Shared> {
    Router::new().route("/federate", get(federate))
}

async fn federate(State(ctx): State<Shared>, p: Params) -> Response {
    let sets = match matcher_sets(&p.all("match[]")) {
        Ok(s) => s,
        Err(e) => return super::text(StatusCode::BAD_REQUEST, &format!("{e}\n")),
    };
    let maxt = now_ms();
    let mint = maxt - ctx.opts.lookback_ms;
    let external = ctx
        .state
        .external_labels
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let db = ctx.state.db.clone();
    let out = tokio::task::spawn_blocking(move || {
        let q = db.querier(mint, maxt);
        let mut latest: BTreeMap<Labels, (i64, f64)> = BTreeMap::new();
        for set in &sets {
            for s in q.select(set)? {
                if latest.contains_key(s.labels()) {
                    continue;
                }
                if let Some(last) = s.samples().last() {
                    latest.insert(s.labels().clone(), last);
                }
            }
        }
        Ok::<_, crate::db::DbError>(exposition(&latest, &external))
    })
    .await;
    match out {
        Ok(Ok(body)) => ([(header::CONTENT_TYPE, TEXT_CONTENT_TYPE)], body).into_response(),
        Ok(Err(e)) => {
            ctx.metrics.federation_errors.inc();
            super::text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n"))
        }
        Err(e) => {
            ctx.metrics.federation_errors.inc();
            super::text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n"))
        }
    }
}

/// The federation body for the latest samples (series sorted by labels).
pub fn exposition(latest: &BTreeMap<Labels, (i64, f64)>, external: &Labels) -> String {
    let mut ext: Vec<(&str, &str)> = external
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect();
    if external.get("instance").is_none() {
        ext.push(("instance", ""));
        ext.sort_unstable();
    }
    // Prometheus sorts by metric name only; within a name, series keep their label order.
    let mut samples: Vec<(&str, &Labels, i64, f64)> = latest
        .iter()
        .filter(|(_, (_, v))| v.to_bits() != STALE_NAN_BITS)
        .filter_map(|(l, &(t, v))| Some((l.metric_name()?, l, t, v)))
        .collect();
    samples.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = String::new();
    let mut last_name: Option<&str> = None;
    for (name, labels, t, v) in samples {
        if last_name != Some(name) {
            out.push_str("# TYPE ");
            out.push_str(name);
            out.push_str(" untyped\n");
            last_name = Some(name);
        }
        out.push_str(name);
        let mut first = true;
        let mut push = |out: &mut String, n: &str, v: &str| {
            out.push(if first { '{' } else { ',' });
            first = false;
            out.push_str(n);
            out.push_str("=\"");
            escape_label_value(out, v);
            out.push('"');
        };
        for l in labels.iter().filter(|l| l.name != METRIC_NAME) {
            push(&mut out, &l.name, &l.value);
        }
        for &(n, v) in &ext {
            if labels.get(n).is_none() {
                push(&mut out, n, v);
            }
        }
        if !first {
            out.push('}');
        }
        out.push(' ');
        out.push_str(&go_float(v));
        out.push(' ');
        out.push_str(&t.to_string());
        out.push('\n');
    }
    out
}

/// The text format's label value escaping: backslash, double quote, newline.
fn escape_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A sample value as the text format writes it: `+Inf`, `-Inf`, `NaN`, else Go's
/// `strconv.FormatFloat(v, 'g', -1, 64)` (shortest digits; exponent form below 1e-4 and from 1e6).
pub fn go_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: `d.ddde±x`.
    let sci = format!("{:e}", v.abs());
    let Some((mantissa, exp)) = sci.split_once('e') else {
        return format!("{v}");
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if v < 0.0 { "-" } else { "" };
    if (-4..6).contains(&exp) {
        // Rust's Display is the shortest round-trip digits without an exponent.
        return format!("{v}");
    }
    format!(
        "{sign}{mantissa}e{}{:02}",
        if exp < 0 { '-' } else { '+' },
        exp.abs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_as_go_g() {
        for (v, want) in [
            (1.0, "1"),
            (-2.5, "-2.5"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (123456.0, "123456"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (1e21, "1e+21"),
            (999999.0, "999999"),
            (2.7291648e7, "2.7291648e+07"),
            (1.5e-7, "1.5e-07"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(go_float(v), want, "{v}");
        }
    }

    #[test]
    fn families_labels_and_stale_markers() {
        let mut latest = BTreeMap::new();
        latest.insert(
            Labels::from_pairs(&[("__name__", "up"), ("job", "a"), ("instance", "x:1")]),
            (1000, 1.0),
        );
        latest.insert(
            Labels::from_pairs(&[("__name__", "up"), ("job", "b")]),
            (2000, 0.0),
        );
        latest.insert(
            Labels::from_pairs(&[("__name__", "gone")]),
            (1000, f64::from_bits(STALE_NAN_BITS)),
        );
        latest.insert(
            Labels::from_pairs(&[("__name__", "a_metric"), ("q", "say \"hi\"\n\\")]),
            (3000, 0.5),
        );
        let ext = Labels::from_pairs(&[("cluster", "c1"), ("job", "ext")]);
        assert_eq!(
            exposition(&latest, &ext),
            concat!(
                "# TYPE a_metric untyped\n",
                "a_metric{q=\"say \\\"hi\\\"\\n\\\\\",cluster=\"c1\",instance=\"\",job=\"ext\"} 0.5 3000\n",
                "# TYPE up untyped\n",
                "up{instance=\"x:1\",job=\"a\",cluster=\"c1\"} 1 1000\n",
                "up{job=\"b\",cluster=\"c1\",instance=\"\"} 0 2000\n",
            )
        );
    }
}
