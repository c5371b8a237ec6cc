//! From discovered target groups to Alertmanager URLs (`AlertmanagerFromGroup`, `postPath`,
//! `alertmanagerSet.sync` of Prometheus 2.42's `notifier` package).
//!
//! Each target starts with `__address__` (and the target's own labels), `__scheme__` set to the
//! entry's `scheme`, `__alerts_path__` set to `path_prefix` joined with `/api/v2/alerts`, then the
//! group's labels where the target has none of that name; the entry's `relabel_configs` run on
//! that set. A target they drop is listed as dropped (its URL from the labels before relabeling);
//! a kept one is `<__scheme__>://<__address__><__alerts_path__>`. An address with a `/` makes the
//! whole group fail, as in Prometheus. Active Alertmanagers are deduplicated by URL.

use std::collections::BTreeSet;

use crate::config::{AlertmanagerConfig, ALERTMANAGER_API_VERSION};
use crate::labels::{Label, Labels};
use crate::relabel::{self, Rule};

use super::super::scrape::target::{Group, ADDRESS_LABEL, SCHEME_LABEL};

/// The label holding the path alerts are posted to.
pub const ALERTS_PATH_LABEL: &str = "__alerts_path__";

/// The Alertmanagers of one `alertmanagers` entry.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Discovered {
    /// URLs to post to, deduplicated, in discovery order.
    pub active: Vec<String>,
    /// URLs of targets that relabeling dropped.
    pub dropped: Vec<String>,
    /// Groups refused (an address with a `/`), with the reason.
    pub failures: Vec<String>,
}

/// Go's `path.Join("/", prefix, "/api/v2/alerts")`: one slash between elements, `.` and `..`
/// resolved.
pub fn post_path(prefix: &str) -> String {
    let joined = format!("/{prefix}/api/{ALERTMANAGER_API_VERSION}/alerts");
    let mut parts: Vec<&str> = Vec::new();
    for p in joined.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// `url.URL{Scheme, Host, Path}.String()` of a label set.
fn url_of(ls: &Labels) -> String {
    let path = ls.get(ALERTS_PATH_LABEL).unwrap_or("");
    let sep = if path.is_empty() || path.starts_with('/') {
        ""
    } else {
        "/"
    };
    format!(
        "{}://{}{sep}{path}",
        ls.get(SCHEME_LABEL).unwrap_or(""),
        ls.get(ADDRESS_LABEL).unwrap_or("")
    )
}

/// The Alertmanagers that `groups` give for `cfg` (whose `relabel_configs` are `rules`).
pub fn alertmanagers(cfg: &AlertmanagerConfig, rules: &[Rule], groups: &[Group]) -> Discovered {
    let mut out = Discovered::default();
    let mut seen = BTreeSet::new();
    let path = post_path(&cfg.path_prefix);
    'groups: for g in groups {
        let mut active = Vec::new();
        let mut dropped = Vec::new();
        for addr in &g.targets {
            let mut ls = vec![
                Label::new(ADDRESS_LABEL, addr.clone()),
                Label::new(SCHEME_LABEL, cfg.scheme.clone()),
                Label::new(ALERTS_PATH_LABEL, path.clone()),
            ];
            for (n, v) in &g.labels {
                if n != ADDRESS_LABEL {
                    ls.push(Label::new(n.clone(), v.clone()));
                }
            }
            // The group's labels never override the target's own (`__address__` here); a
            // group label named `__scheme__` or `__alerts_path__` replaces the default.
            let before = Labels::new(ls);
            match relabel::process(rules, &before) {
                None => dropped.push(url_of(&before)),
                Some(after) => {
                    let a = after.get(ADDRESS_LABEL).unwrap_or("");
                    if a.contains('/') {
                        out.failures
                            .push(format!("{}: {a:?} is not a valid hostname", g.source));
                        continue 'groups;
                    }
                    active.push(url_of(&after));
                }
            }
        }
        for u in active {
            if seen.insert(u.clone()) {
                out.active.push(u);
            }
        }
        out.dropped.extend(dropped);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StaticConfig;
    use crate::relabel::RelabelConfig;
    use std::collections::BTreeMap;

    fn group(targets: &[&str], labels: &[(&str, &str)]) -> Group {
        Group::from_static(
            "test/0".to_string(),
            &StaticConfig {
                targets: targets.iter().map(|s| s.to_string()).collect(),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
            },
        )
    }

    #[test]
    fn post_paths_as_go_path_join() {
        assert_eq!(post_path(""), "/api/v2/alerts");
        assert_eq!(post_path("/"), "/api/v2/alerts");
        assert_eq!(post_path("am"), "/am/api/v2/alerts");
        assert_eq!(post_path("/am/"), "/am/api/v2/alerts");
        assert_eq!(post_path("/a//b/../c"), "/a/c/api/v2/alerts");
    }

    #[test]
    fn urls_relabeling_and_dedup() {
        let cfg = AlertmanagerConfig {
            scheme: "https".to_string(),
            path_prefix: "/am".to_string(),
            ..AlertmanagerConfig::default()
        };
        let d = alertmanagers(
            &cfg,
            &[],
            &[group(&["a:9093", "b:9093"], &[]), group(&["a:9093"], &[])],
        );
        assert_eq!(
            d.active,
            vec![
                "https://a:9093/am/api/v2/alerts",
                "https://b:9093/am/api/v2/alerts"
            ]
        );

        // Keep only :9093, rewrite the scheme from a group label.
        let rules: Vec<RelabelConfig> = serde_yaml::from_str(
            "- source_labels: [__address__]\n  regex: '.*:9093'\n  action: keep\n- source_labels: [proto]\n  target_label: __scheme__\n",
        )
        .unwrap();
        let rules = relabel::compile(&rules).unwrap();
        let d = alertmanagers(
            &AlertmanagerConfig::default(),
            &rules,
            &[group(&["a:9093", "b:9094"], &[("proto", "https")])],
        );
        assert_eq!(d.active, vec!["https://a:9093/api/v2/alerts"]);
        assert_eq!(d.dropped, vec!["http://b:9094/api/v2/alerts"]);

        // An address with a slash fails its whole group only.
        let d = alertmanagers(
            &AlertmanagerConfig::default(),
            &[],
            &[group(&["ok:1", "http://x:1"], &[]), group(&["c:1"], &[])],
        );
        assert_eq!(d.active, vec!["http://c:1/api/v2/alerts"]);
        assert_eq!(d.failures.len(), 1);
    }
}
