//! Prometheus rule files (`rule_files:` in `prometheus.yml`): groups of recording and alerting
//! rules, read and validated as Prometheus 2.42's `model/rulefmt` does, so that a file
//! Prometheus rejects is rejected here when the configuration is loaded. Evaluating the rules is
//! a later layer's work; this module gives it the parsed [`RuleFile`].
//!
//! Checks: unknown keys; group names present and unique in the file; each rule exactly one of
//! `record`/`alert`; `expr` present and a valid PromQL expression; recording rules named as
//! metrics and without `for`, `keep_firing_for` or `annotations`; label names valid (not
//! `__name__`), annotation names valid; the Go templates of alert labels and annotations parse
//! ([`crate::rules::template`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::locate::{line_of, position_of, Seg};
use super::{ConfigError, Duration};
use crate::relabel::is_valid_label_name;

/// A parsed, valid rule file.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleFile {
    pub path: PathBuf,
    pub groups: Vec<RuleGroup>,
}

/// A group of rules evaluated together, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleGroup {
    pub name: String,
    /// `interval:`; `None` means the global `evaluation_interval`.
    pub interval: Option<Duration>,
    /// `limit:` (0: none): the most series a rule of the group may produce.
    pub limit: i64,
    pub rules: Vec<RuleSpec>,
}

/// Whether a rule records a series or fires an alert, with the series or alert name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleKind {
    Record(String),
    Alert(String),
}

/// One rule as written.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleSpec {
    pub kind: RuleKind,
    /// The PromQL expression (valid: it parsed).
    pub expr: String,
    /// `for:` of an alerting rule (zero when absent).
    pub for_duration: Duration,
    /// `keep_firing_for:` of an alerting rule (zero when absent).
    pub keep_firing_for: Duration,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

impl RuleSpec {
    /// The recorded series' or the alert's name.
    pub fn name(&self) -> &str {
        match &self.kind {
            RuleKind::Record(n) | RuleKind::Alert(n) => n,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawFile {
    groups: Option<Vec<RawGroup>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawGroup {
    name: Option<String>,
    interval: Option<Duration>,
    limit: Option<i64>,
    rules: Option<Vec<RawRule>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawRule {
    record: Option<String>,
    alert: Option<String>,
    expr: Option<String>,
    #[serde(rename = "for")]
    for_duration: Option<Duration>,
    keep_firing_for: Option<Duration>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`: Prometheus' `model.IsValidMetricName`.
pub fn is_valid_metric_name(s: &str) -> bool {
    let b = s.as_bytes();
    match b.first() {
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' || *c == b':' => {}
        _ => return false,
    }
    b.iter()
        .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b':')
}

fn parse_promql(expr: &str) -> Result<(), String> {
    crate::promql::parse_expr(expr).map(|_| ())
}

impl RuleFile {
    /// Reads and validates a rule file.
    pub fn load(path: &Path) -> Result<RuleFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        RuleFile::parse(&text, path)
    }

    /// Validates rule-file text; `path` names it in errors. All problems are reported, each
    /// prefixed with its line as promtool does (`12: group "g", rule 1, "x": ...`).
    pub fn parse(text: &str, path: &Path) -> Result<RuleFile, ConfigError> {
        let raw: RawFile = if text.trim().is_empty() {
            RawFile::default()
        } else {
            serde_yaml::from_str(text).map_err(|e| ConfigError::from_yaml(path, &e))?
        };
        let mut errors = Vec::new();
        let at = |p: &[Seg]| -> String {
            line_of(text, p)
                .map(|l| format!("{l}: "))
                .unwrap_or_default()
        };
        // promtool puts the yaml.v3 position of the node an error is about first (`5:15: `, the
        // value of `expr`); where it has none (labels, annotations, templates; a missing key,
        // which it prints as `0:0:`) the line of the deepest part of `p` found is given instead,
        // so that every error still names its line.
        let pos = |p: &[Seg]| -> String {
            match position_of(text, p) {
                Some((l, c)) => format!("{l}:{c}: "),
                None => at(p),
            }
        };
        let mut seen = BTreeSet::new();
        let mut groups = Vec::new();
        for (gi, g) in raw.groups.unwrap_or_default().into_iter().enumerate() {
            let gpath = [Seg::key("groups"), Seg::Idx(gi)];
            let name = g.name.unwrap_or_default();
            if name.is_empty() {
                errors.push(format!("{}Groupname must not be empty", pos(&gpath)));
            }
            if !seen.insert(name.clone()) {
                errors.push(format!(
                    "{}groupname: {name:?} is repeated in the same file",
                    pos(&gpath)
                ));
            }
            let mut rules = Vec::new();
            for (ri, r) in g.rules.unwrap_or_default().into_iter().enumerate() {
                let rpath = |key: &str| {
                    let mut p = gpath.to_vec();
                    p.extend([Seg::key("rules"), Seg::Idx(ri), Seg::key(key)]);
                    p
                };
                let record = r.record.unwrap_or_default();
                let alert = r.alert.unwrap_or_default();
                let rule_name = if alert.is_empty() { &record } else { &alert };
                let mut err = |key: &str, msg: String| {
                    let at_key = match key {
                        "record" | "expr" => pos(&rpath(key)),
                        // promtool names both nodes: `9:17: 10:16: group ...`.
                        "record+alert" => {
                            format!("{}{}", pos(&rpath("record")), pos(&rpath("alert")))
                        }
                        _ => at(&rpath(key)),
                    };
                    errors.push(format!(
                        "{at_key}group {name:?}, rule {}, {rule_name:?}: {msg}",
                        ri + 1
                    ));
                };
                if !record.is_empty() && !alert.is_empty() {
                    err(
                        "record+alert",
                        "only one of 'record' and 'alert' must be set".into(),
                    );
                }
                if record.is_empty() && alert.is_empty() {
                    err("record", "one of 'record' or 'alert' must be set".into());
                }
                let expr = r.expr.unwrap_or_default();
                if expr.is_empty() {
                    err("expr", "field 'expr' must be set in rule".into());
                } else if let Err(e) = parse_promql(&expr) {
                    err("expr", format!("could not parse expression: {e}"));
                }
                let labels = r.labels.unwrap_or_default();
                let annotations = r.annotations.unwrap_or_default();
                let for_duration = r.for_duration.unwrap_or_default();
                let keep_firing_for = r.keep_firing_for.unwrap_or_default();
                if !record.is_empty() {
                    if !annotations.is_empty() {
                        err(
                            "record",
                            "invalid field 'annotations' in recording rule".into(),
                        );
                    }
                    if for_duration.0 != 0 {
                        err("record", "invalid field 'for' in recording rule".into());
                    }
                    if keep_firing_for.0 != 0 {
                        err(
                            "record",
                            "invalid field 'keep_firing_for' in recording rule".into(),
                        );
                    }
                    if !is_valid_metric_name(&record) {
                        err("record", format!("invalid recording rule name: {record}"));
                    }
                }
                for k in labels.keys() {
                    if !is_valid_label_name(k) || k == "__name__" {
                        err("labels", format!("invalid label name: {k}"));
                    }
                }
                for k in annotations.keys() {
                    if !is_valid_label_name(k) {
                        err("annotations", format!("invalid annotation name: {k}"));
                    }
                }
                if !alert.is_empty() {
                    // Prometheus' rulefmt parses every label and annotation template of an
                    // alerting rule (named `__alert_<name>`, with its variable definitions).
                    let tmpl_name = format!("__alert_{alert}");
                    for (kind, section, map) in [
                        ("label", "labels", &labels),
                        ("annotation", "annotations", &annotations),
                    ] {
                        for (k, v) in map {
                            if let Err(e) = crate::rules::template::Template::parse(&tmpl_name, v) {
                                let mut p = rpath(section);
                                p.push(Seg::key(k));
                                errors.push(format!(
                                    "{}group {name:?}, rule {}, {rule_name:?}: {kind} {k:?}: {e}",
                                    at(&p),
                                    ri + 1
                                ));
                            }
                        }
                    }
                }
                let kind = if alert.is_empty() {
                    RuleKind::Record(record)
                } else {
                    RuleKind::Alert(alert)
                };
                rules.push(RuleSpec {
                    kind,
                    expr,
                    for_duration,
                    keep_firing_for,
                    labels,
                    annotations,
                });
            }
            groups.push(RuleGroup {
                name,
                interval: g.interval.filter(|d| d.0 != 0),
                limit: g.limit.unwrap_or(0),
                rules,
            });
        }
        if !errors.is_empty() {
            return Err(ConfigError::RuleFile {
                file: path.to_path_buf(),
                errors,
            });
        }
        Ok(RuleFile {
            path: path.to_path_buf(),
            groups,
        })
    }

    /// How many rules the file holds (promtool's "N rules found").
    pub fn rule_count(&self) -> usize {
        self.groups.iter().map(|g| g.rules.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<RuleFile, ConfigError> {
        RuleFile::parse(s, Path::new("r.yml"))
    }

    #[test]
    fn valid_file() {
        let f = parse(
            "groups:\n- name: g\n  interval: 30s\n  rules:\n  - record: job:up:sum\n    expr: sum by (job) (up)\n  - alert: Down\n    expr: up == 0\n    for: 5m\n    labels:\n      severity: page\n    annotations:\n      summary: down\n",
        )
        .unwrap();
        assert_eq!(f.rule_count(), 2);
        assert_eq!(f.groups[0].interval, Some(Duration::from_secs(30)));
        assert_eq!(
            f.groups[0].rules[0].kind,
            RuleKind::Record("job:up:sum".into())
        );
        assert_eq!(f.groups[0].rules[1].for_duration, Duration::from_secs(300));
        assert_eq!(f.groups[0].rules[1].name(), "Down");
        assert!(parse("").unwrap().groups.is_empty());
    }

    #[test]
    fn invalid_rules_name_their_lines() {
        let e =
            parse("groups:\n- name: g\n  rules:\n  - record: a-b\n    expr: up(\n").unwrap_err();
        let ConfigError::RuleFile { errors, .. } = e else {
            panic!("{e}")
        };
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("5:11: group \"g\", rule 1, \"a-b\": could not parse expression"),
            "{errors:?}"
        );
        assert_eq!(
            errors[1],
            "4:13: group \"g\", rule 1, \"a-b\": invalid recording rule name: a-b"
        );
        for (bad, want) in [
            ("groups:\n- name: g\n  rules: []\n- name: g\n", "is repeated"),
            ("groups:\n- rules: []\n", "Groupname must not be empty"),
            ("groups:\n- name: g\n  rules:\n  - expr: up\n", "one of 'record' or 'alert' must be set"),
            ("groups:\n- name: g\n  rules:\n  - record: a\n    alert: b\n    expr: up\n", "only one of"),
            ("groups:\n- name: g\n  rules:\n  - record: a\n", "field 'expr' must be set"),
            ("groups:\n- name: g\n  rules:\n  - record: a\n    expr: up\n    for: 1m\n", "invalid field 'for'"),
            ("groups:\n- name: g\n  rules:\n  - alert: a\n    expr: up\n    labels:\n      __name__: x\n", "invalid label name"),
            ("groups:\n- name: g\n  rules:\n  - alert: a\n    expr: up\n    annotations:\n      a-b: x\n", "invalid annotation name"),
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad:?}: {e}");
        }
        // Unknown keys are decoder errors with a position.
        let e = parse("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up\n    labels:\n      ok: '{{ $labels.job }}'\n      sev: '{{ if }}'\n    annotations:\n      summary: '{{ humanize $value }}'\n      desc: '{{ nosuch }}'\n").unwrap_err();
        let ConfigError::RuleFile { errors, .. } = e else {
            panic!("{e}")
        };
        assert_eq!(
            errors,
            [
                "8: group \"g\", rule 1, \"A\": label \"sev\": template: __alert_A:1: missing value for if",
                "11: group \"g\", rule 1, \"A\": annotation \"desc\": template: __alert_A:1: function \"nosuch\" not defined",
            ]
        );
        // Recording rules have no templates; alerting rules with valid ones load.
        assert!(parse("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up\n    annotations:\n      s: '{{ range $k, $v := $labels }}{{ $k }}{{ end }}'\n").is_ok());
        let e = parse("groups:\n- name: g\n  rulez: []\n").unwrap_err();
        assert_eq!(e.line(), Some(3), "{e}");
    }
}
