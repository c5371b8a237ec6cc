//! The body of `POST /api/v2/alerts`: Alertmanager's `PostableAlerts` as Prometheus 2.42's
//! notifier marshals them (`alertsToOpenAPIAlerts` + go-swagger's JSON of the Alertmanager 0.25
//! models).
//!
//! Facts carried over: each alert is an object with `annotations` (left out when empty),
//! `endsAt` and `startsAt` (go-openapi `strfmt.DateTime`, printed as RFC 3339 with exactly three
//! fractional digits; Prometheus' times are UTC on a server, so `Z`), `generatorURL` (left out when
//! empty) and `labels` (always present); label maps are JSON objects with keys sorted, strings
//! escaped as Go's `encoding/json` does (`<`, `>`, `&` as `\u003c`...). A pure function: the
//! sender encodes a batch once and posts the same bytes to every Alertmanager.

use std::fmt::Write;

use crate::api::{format_rfc3339, write_json_string};
use crate::labels::Labels;
use crate::rules::Alert;

/// The JSON array of `alerts`, ready to post.
pub fn encode_alerts(alerts: &[Alert]) -> String {
    let mut out = String::with_capacity(alerts.len() * 256 + 2);
    out.push('[');
    for (i, a) in alerts.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('{');
        if !a.annotations.is_empty() {
            out.push_str("\"annotations\":");
            write_label_set(&mut out, &a.annotations);
            out.push(',');
        }
        let _ = write!(
            out,
            "\"endsAt\":\"{}\",\"startsAt\":\"{}\",",
            format_rfc3339(a.ends_at_ms),
            format_rfc3339(a.starts_at_ms)
        );
        if !a.generator_url.is_empty() {
            out.push_str("\"generatorURL\":");
            write_json_string(&mut out, &a.generator_url);
            out.push(',');
        }
        out.push_str("\"labels\":");
        write_label_set(&mut out, &a.labels);
        out.push('}');
    }
    out.push(']');
    out
}

/// A label set as a JSON object (`Labels` are sorted by name, as Go sorts map keys).
fn write_label_set(out: &mut String, ls: &Labels) {
    out.push('{');
    for (i, l) in ls.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_string(out, &l.name);
        out.push(':');
        write_json_string(out, &l.value);
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the labels and annotations hold, a JSON decoder reads back exactly them.
        #[test]
        fn any_alert_round_trips_through_json(
            labels in proptest::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,8}", "\\PC{1,12}", 1..6),
            annotations in proptest::collection::btree_map("[a-z]{1,8}", "[\\s\\S]{1,20}", 0..4),
            starts in 0i64..4_000_000_000_000,
            url in "\\PC{0,30}",
        ) {
            let a = Alert {
                labels: Labels::new(labels.iter().map(|(k, v)| crate::labels::Label::new(k.clone(), v.clone())).collect()),
                annotations: Labels::new(annotations.iter().map(|(k, v)| crate::labels::Label::new(k.clone(), v.clone())).collect()),
                starts_at_ms: starts,
                ends_at_ms: starts + 1,
                generator_url: url.clone(),
            };
            let v: serde_json::Value = serde_json::from_str(&encode_alerts(std::slice::from_ref(&a))).unwrap();
            for l in a.labels.iter() {
                prop_assert_eq!(v[0]["labels"][&l.name].as_str(), Some(l.value.as_str()));
            }
            prop_assert_eq!(v[0]["labels"].as_object().unwrap().len(), a.labels.len());
            for l in a.annotations.iter() {
                prop_assert_eq!(v[0]["annotations"][&l.name].as_str(), Some(l.value.as_str()));
            }
            let want = format_rfc3339(starts);
            prop_assert_eq!(v[0]["startsAt"].as_str(), Some(want.as_str()));
            if !url.is_empty() {
                prop_assert_eq!(v[0]["generatorURL"].as_str(), Some(url.as_str()));
            }
        }
    }

    fn alert(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Alert {
        Alert {
            labels: Labels::from_pairs(labels),
            annotations: Labels::from_pairs(annotations),
            starts_at_ms: 1_700_000_000_123,
            ends_at_ms: 1_700_000_060_000,
            generator_url: "http://h:9090/graph?g0.expr=up+%3E+1&g0.tab=1".to_string(),
        }
    }

    #[test]
    fn shape_as_prometheus_sends_it() {
        let a = alert(
            &[("severity", "low"), ("alertname", "ExampleAlertName")],
            &[("summary", "a <b> & \"c\"")],
        );
        assert_eq!(
            encode_alerts(&[a]),
            concat!(
                r#"[{"annotations":{"summary":"a \u003cb\u003e \u0026 \"c\""},"#,
                r#""endsAt":"2023-11-14T22:14:20.000Z","startsAt":"2023-11-14T22:13:20.123Z","#,
                r#""generatorURL":"http://h:9090/graph?g0.expr=up+%3E+1\u0026g0.tab=1","#,
                r#""labels":{"alertname":"ExampleAlertName","severity":"low"}}]"#
            )
        );
    }

    #[test]
    fn empty_annotations_and_url_left_out() {
        let mut a = alert(&[("alertname", "A")], &[]);
        a.generator_url.clear();
        let s = encode_alerts(&[a.clone(), a]);
        assert_eq!(
            s,
            r#"[{"endsAt":"2023-11-14T22:14:20.000Z","startsAt":"2023-11-14T22:13:20.123Z","labels":{"alertname":"A"}},{"endsAt":"2023-11-14T22:14:20.000Z","startsAt":"2023-11-14T22:13:20.123Z","labels":{"alertname":"A"}}]"#
        );
        // Valid JSON that a generic decoder reads back.
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v[1]["labels"]["alertname"], "A");
        assert_eq!(encode_alerts(&[]), "[]");
    }
}
