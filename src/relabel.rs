//! Relabeling: Prometheus' `relabel_configs`, `metric_relabel_configs` and
//! `write_relabel_configs` rules (`model/relabel/relabel.go` of Prometheus 2.42 is the reference
//! for every action and default).
//!
//! A storage-independent label transformation: the scrape manager applies it to targets and to
//! scraped series, the remote writer to what it sends. It lives outside `server` so that an
//! embedding application can relabel what it appends without the HTTP stack.

use serde::{Deserialize, Serialize};

/// What a rule does (`action:` in YAML, lower case).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    #[default]
    Replace,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
}

/// One relabeling rule as written in YAML, with Prometheus' defaults (`separator: ;`,
/// `regex: (.*)`, `replacement: $1`, `action: replace`). The regex is anchored at both ends when
/// compiled, as Prometheus does.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelabelConfig {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub source_labels: Vec<String>,
    pub separator: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_label: Option<String>,
    pub regex: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modulus: Option<u64>,
    pub replacement: String,
    pub action: Action,
}

impl Default for RelabelConfig {
    fn default() -> RelabelConfig {
        RelabelConfig {
            source_labels: Vec::new(),
            separator: ";".to_string(),
            target_label: None,
            regex: "(.*)".to_string(),
            modulus: None,
            replacement: "$1".to_string(),
            action: Action::Replace,
        }
    }
}
