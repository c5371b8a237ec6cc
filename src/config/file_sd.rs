//! `file_sd_configs` target files: a JSON or YAML list of target groups (`targets` and `labels`),
//! read as Prometheus' `discovery/file` reads them (2.42).
//!
//! The format is chosen by the file's extension (`.json`, `.yml`, `.yaml`, any case); unknown keys
//! are errors in both. Prometheus' file discovery adds the label `__meta_filepath` (the file's
//! path) to every group it reads: [`read_file_sd`] adds it here, to each returned group's
//! `labels`, so that relabeling sees it exactly as in Prometheus.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::{ConfigError, StaticConfig};
use crate::relabel::is_valid_label_name;

/// The label file discovery sets on every target group: the path of the file it came from.
pub const FILE_SD_PATH_LABEL: &str = "__meta_filepath";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawGroup {
    targets: Option<Vec<String>>,
    labels: Option<BTreeMap<String, String>>,
}

/// Reads one target file: its groups, each with `__meta_filepath` set to `path`.
pub fn read_file_sd(path: &Path) -> Result<Vec<StaticConfig>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_file_sd(&text, path)
}

/// [`read_file_sd`] on text already read; `path` picks the format and fills `__meta_filepath`.
pub(crate) fn parse_file_sd(text: &str, path: &Path) -> Result<Vec<StaticConfig>, ConfigError> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let groups: Vec<Option<RawGroup>> = match ext.as_str() {
        "json" => serde_json::from_str(text).map_err(|e| ConfigError::Syntax {
            file: path.to_path_buf(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?,
        "yml" | "yaml" => {
            if text.trim().is_empty() {
                Vec::new()
            } else {
                serde_yaml::from_str(text).map_err(|e| ConfigError::from_yaml(path, &e))?
            }
        }
        _ => {
            return Err(ConfigError::Decode {
                file: path.to_path_buf(),
                message: format!("invalid file extension: \".{ext}\""),
            })
        }
    };
    let file = path.to_string_lossy().into_owned();
    let mut out = Vec::with_capacity(groups.len());
    for (i, g) in groups.into_iter().enumerate() {
        let Some(g) = g else {
            return Err(ConfigError::Decode {
                file: path.to_path_buf(),
                message: format!("nil target group item found (index {i})"),
            });
        };
        let mut labels = g.labels.unwrap_or_default();
        if let Some(bad) = labels.keys().find(|n| !is_valid_label_name(n)) {
            return Err(ConfigError::Invalid {
                file: path.to_path_buf(),
                line: None,
                context: format!("target group {i}"),
                message: format!("{bad:?} is not a valid label name"),
            });
        }
        labels.insert(FILE_SD_PATH_LABEL.to_string(), file.clone());
        out.push(StaticConfig {
            targets: g.targets.unwrap_or_default(),
            labels,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_yaml_groups() {
        let p = Path::new("/etc/prom/targets.json");
        let g = parse_file_sd(
            r#"[{"targets": ["a:1", "b:2"], "labels": {"env": "prod"}}, {"targets": ["c:3"]}]"#,
            p,
        )
        .unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].targets, vec!["a:1", "b:2"]);
        assert_eq!(g[0].labels.get("env").map(String::as_str), Some("prod"));
        assert_eq!(
            g[1].labels.get(FILE_SD_PATH_LABEL).map(String::as_str),
            Some("/etc/prom/targets.json")
        );
        let y = parse_file_sd(
            "- targets: ['a:1']\n  labels:\n    env: dev\n",
            Path::new("t.YML"),
        )
        .unwrap();
        assert_eq!(y[0].targets, vec!["a:1"]);
        assert!(parse_file_sd("", Path::new("t.yml")).unwrap().is_empty());
    }

    #[test]
    fn errors() {
        let e = parse_file_sd(r#"[{"targets": [], "foo": 1}]"#, Path::new("t.json")).unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { line: 1, .. }), "{e}");
        let e = parse_file_sd("- targets: []\n  lables: {}\n", Path::new("t.yml")).unwrap_err();
        assert_eq!(e.line(), Some(2), "{e}");
        assert!(parse_file_sd("[null]", Path::new("t.json")).is_err());
        assert!(parse_file_sd("[]", Path::new("t.txt")).is_err());
        assert!(parse_file_sd(r#"[{"labels": {"a-b": "x"}}]"#, Path::new("t.json")).is_err());
    }
}
