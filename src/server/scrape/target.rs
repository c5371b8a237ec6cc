//! Targets: from a discovered target group to the labels, URL and schedule of one scrape loop
//! (`scrape/target.go` of Prometheus 2.42: `PopulateLabels`, `targetsFromGroup`, `Target.URL`,
//! `Target.hash`, `Target.offset`).

use std::collections::BTreeMap;

use crate::config::{Duration, ScrapeConfig, StaticConfig};
use crate::labels::{Label, Labels};
use crate::relabel::{self, Rule};

/// Label holding the target's `host:port`.
pub const ADDRESS_LABEL: &str = "__address__";
pub const SCHEME_LABEL: &str = "__scheme__";
pub const METRICS_PATH_LABEL: &str = "__metrics_path__";
pub const SCRAPE_INTERVAL_LABEL: &str = "__scrape_interval__";
pub const SCRAPE_TIMEOUT_LABEL: &str = "__scrape_timeout__";
/// `__param_<name>`: a URL query parameter.
pub const PARAM_LABEL_PREFIX: &str = "__param_";
/// Discovery metadata (`__meta_*`), removed after target relabeling.
pub const META_LABEL_PREFIX: &str = "__meta_";
pub const JOB_LABEL: &str = "job";
pub const INSTANCE_LABEL: &str = "instance";

/// A scrape config with the global defaults applied (what Prometheus' config loader fills in):
/// interval, timeout and limits are always set.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolConfig {
    pub job: ScrapeConfig,
    pub interval: Duration,
    pub timeout: Duration,
    pub sample_limit: u64,
    pub target_limit: u64,
    pub label_limit: u64,
    pub label_name_length_limit: u64,
    pub label_value_length_limit: u64,
    /// Bytes of uncompressed body a scrape may read; 0: no limit.
    pub body_size_limit: u64,
}

impl PoolConfig {
    /// Prometheus' defaulting: the job's interval or the global one; the job's timeout, or the
    /// global one capped at the interval; limits from the job or the global section.
    pub fn resolve(job: &ScrapeConfig, global: &crate::config::GlobalConfig) -> PoolConfig {
        let interval = job.scrape_interval.unwrap_or(global.scrape_interval);
        let timeout = job
            .scrape_timeout
            .unwrap_or_else(|| global.scrape_timeout.min(interval));
        PoolConfig {
            job: job.clone(),
            interval,
            timeout,
            sample_limit: job.sample_limit.unwrap_or(global.sample_limit),
            target_limit: job.target_limit.unwrap_or(global.target_limit),
            label_limit: job.label_limit.unwrap_or(global.label_limit),
            label_name_length_limit: job
                .label_name_length_limit
                .unwrap_or(global.label_name_length_limit),
            label_value_length_limit: job
                .label_value_length_limit
                .unwrap_or(global.label_value_length_limit),
            body_size_limit: 0,
        }
    }

    /// Prometheus' `reusableCache`: the series cache of a restarted pool stays valid when only
    /// settings that do not change the stored series differ (interval, timeout, sample limit, HTTP
    /// client).
    pub fn cache_reusable(&self, other: &PoolConfig) -> bool {
        fn zero(c: &PoolConfig) -> PoolConfig {
            let mut z = c.clone();
            z.interval = Duration(0);
            z.timeout = Duration(0);
            z.sample_limit = 0;
            z.job.scrape_interval = None;
            z.job.scrape_timeout = None;
            z.job.sample_limit = None;
            z.job.http = Default::default();
            z
        }
        zero(self) == zero(other)
    }
}

/// One target: labels before and after relabeling, and what its loop needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// Labels before relabeling (discovered plus the job's defaults).
    pub discovered: Labels,
    /// Labels after relabeling, `__`-prefixed ones included (minus `__meta_*`).
    pub labels: Labels,
    /// The job's `params`; `__param_*` labels override their first values.
    pub params: BTreeMap<String, Vec<String>>,
}

impl Target {
    /// Labels every scraped series of the target gets: those without the `__` prefix.
    pub fn public_labels(&self) -> Labels {
        Labels::from_sorted_unchecked(
            self.labels
                .iter()
                .filter(|l| !l.name.starts_with("__"))
                .cloned()
                .collect(),
        )
    }

    /// The scrape URL (Prometheus' `Target.URL`): scheme, address and path from the labels,
    /// query from `params` with `__param_<name>` labels replacing each name's first value,
    /// encoded sorted by name as Go's `url.Values.Encode`.
    pub fn url(&self) -> String {
        let mut params = self.params.clone();
        for l in self.labels.iter() {
            if let Some(k) = l.name.strip_prefix(PARAM_LABEL_PREFIX) {
                match params.get_mut(k) {
                    Some(v) if !v.is_empty() => v[0] = l.value.clone(),
                    _ => {
                        params.insert(k.to_string(), vec![l.value.clone()]);
                    }
                }
            }
        }
        let mut query = String::new();
        for (k, vs) in &params {
            for v in vs {
                if !query.is_empty() {
                    query.push('&');
                }
                query_escape(&mut query, k);
                query.push('=');
                query_escape(&mut query, v);
            }
        }
        let scheme = self.labels.get(SCHEME_LABEL).unwrap_or("");
        let host = self.labels.get(ADDRESS_LABEL).unwrap_or("");
        let path = self.labels.get(METRICS_PATH_LABEL).unwrap_or("");
        let mut url = format!("{scheme}://{host}");
        if !path.is_empty() && !path.starts_with('/') {
            url.push('/');
        }
        path_escape(&mut url, path);
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query);
        }
        url
    }

    /// The scrape interval and timeout from `__scrape_interval__` / `__scrape_timeout__`
    /// (validated when the target was built).
    pub fn interval_timeout(&self) -> (Duration, Duration) {
        let get = |n: &str| {
            self.labels
                .get(n)
                .and_then(|v| v.parse::<Duration>().ok())
                .unwrap_or(Duration(0))
        };
        (get(SCRAPE_INTERVAL_LABEL), get(SCRAPE_TIMEOUT_LABEL))
    }

    /// Prometheus' `Target.hash`: FNV-1a 64 of the label hash printed as `%016d`, then the URL.
    /// Two targets with the same hash are one target.
    pub fn hash(&self) -> u64 {
        let mut h = Fnv64a::new();
        h.write(format!("{:016}", labels_hash(&self.labels)).as_bytes());
        h.write(self.url().as_bytes());
        h.finish()
    }

    /// Prometheus' `Target.offset`: how long to wait before the first scrape so that scrapes of
    /// the target happen at `(hash ^ seed) % interval` past each multiple of the interval (Unix
    /// time), spreading targets over the interval.
    pub fn offset(
        &self,
        interval: std::time::Duration,
        seed: u64,
        now_ns: u128,
    ) -> std::time::Duration {
        let iv = interval.as_nanos().max(1);
        let base = iv - now_ns % iv;
        let offset = u128::from(self.hash() ^ seed) % iv;
        let mut next = base + offset;
        if next > iv {
            next -= iv;
        }
        std::time::Duration::from_nanos(next.min(u128::from(u64::MAX)) as u64)
    }
}

/// Prometheus 2.42's `labels.Labels.Hash`: xxhash64 of `name \xff value \xff` for each label
/// in order.
pub fn labels_hash(labels: &Labels) -> u64 {
    let mut h = xxhash_rust::xxh64::Xxh64::new(0);
    for l in labels.iter() {
        h.update(l.name.as_bytes());
        h.update(&[0xff]);
        h.update(l.value.as_bytes());
        h.update(&[0xff]);
    }
    h.digest()
}

/// FNV-1a, 64 bit (Go's `hash/fnv.New64a`).
pub struct Fnv64a(u64);

impl Fnv64a {
    pub fn new() -> Fnv64a {
        Fnv64a(0xcbf2_9ce4_8422_2325)
    }
    pub fn write(&mut self, b: &[u8]) {
        for &c in b {
            self.0 ^= u64::from(c);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    pub fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for Fnv64a {
    fn default() -> Self {
        Fnv64a::new()
    }
}

/// Go's `url.QueryEscape`.
fn query_escape(out: &mut String, s: &str) {
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
}

/// Go's path escaping of `url.URL.String` (close enough: unreserved, `/` and sub-delimiters kept).
fn path_escape(out: &mut String, s: &str) {
    for b in s.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'~'
            | b'/'
            | b'$'
            | b'&'
            | b'+'
            | b','
            | b';'
            | b'='
            | b':'
            | b'@'
            | b'!'
            | b'\''
            | b'('
            | b')'
            | b'*' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
}

/// A target group: where it came from (for replacing it when its source changes), its targets'
/// label sets (`__address__` each) and the labels they all get.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub source: String,
    pub targets: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

impl Group {
    pub fn from_static(source: String, sc: &StaticConfig) -> Group {
        Group {
            source,
            targets: sc.targets.clone(),
            labels: sc.labels.clone(),
        }
    }
}

/// What building the targets of a group gave.
#[derive(Debug, Default)]
pub struct Built {
    pub active: Vec<Target>,
    /// Discovered labels of targets that relabeling dropped.
    pub dropped: Vec<Labels>,
    /// Targets refused, with the reason (Prometheus logs these and skips the target).
    pub failures: Vec<String>,
}

/// Prometheus' `targetsFromGroup` + `PopulateLabels` for every target of `group`.
pub fn targets_from_group(group: &Group, cfg: &PoolConfig, rules: &[Rule], out: &mut Built) {
    for (i, addr) in group.targets.iter().enumerate() {
        let mut ls = vec![Label::new(ADDRESS_LABEL, addr.clone())];
        for (n, v) in &group.labels {
            if n != ADDRESS_LABEL {
                ls.push(Label::new(n.clone(), v.clone()));
            }
        }
        match populate_labels(Labels::new(ls), cfg, rules) {
            Ok((Some(labels), discovered)) => out.active.push(Target {
                discovered,
                labels,
                params: cfg.job.params.clone(),
            }),
            Ok((None, discovered)) => out.dropped.push(discovered),
            Err(e) => out
                .failures
                .push(format!("instance {i} in group {}: {e}", group.source)),
        }
    }
}

/// Prometheus' `PopulateLabels`: the job's defaults for labels not set, `__param_*` from
/// `params`, relabeling, then the checks and defaults after it. `Ok((None, discovered))` when
/// relabeling dropped the target.
pub fn populate_labels(
    lset: Labels,
    cfg: &PoolConfig,
    rules: &[Rule],
) -> Result<(Option<Labels>, Labels), String> {
    let mut ls = lset.into_vec();
    let defaults = [
        (JOB_LABEL, cfg.job.job_name.clone()),
        (SCRAPE_INTERVAL_LABEL, cfg.interval.to_string()),
        (SCRAPE_TIMEOUT_LABEL, cfg.timeout.to_string()),
        (METRICS_PATH_LABEL, cfg.job.metrics_path.clone()),
        (SCHEME_LABEL, cfg.job.scheme.clone()),
    ];
    for (n, v) in defaults {
        if !ls.iter().any(|l| l.name == n && !l.value.is_empty()) {
            ls.push(Label::new(n, v));
        }
    }
    for (k, v) in &cfg.job.params {
        if let Some(first) = v.first() {
            ls.retain(|l| l.name != format!("{PARAM_LABEL_PREFIX}{k}"));
            ls.push(Label::new(
                format!("{PARAM_LABEL_PREFIX}{k}"),
                first.clone(),
            ));
        }
    }
    let pre = Labels::new(ls);
    let Some(post) = relabel::process(rules, &pre) else {
        return Ok((None, pre));
    };
    let Some(addr) = post.get(ADDRESS_LABEL).map(str::to_string) else {
        return Err("no address".to_string());
    };
    let mut ls = post.clone().into_vec();
    let mut addr = addr;
    if needs_port(&addr) {
        match post.get(SCHEME_LABEL).unwrap_or("") {
            "http" | "" => addr.push_str(":80"),
            "https" => addr.push_str(":443"),
            _ => return Err(format!("invalid scheme: {:?}", cfg.job.scheme)),
        }
        set(&mut ls, ADDRESS_LABEL, &addr);
    }
    if addr.contains('/') {
        return Err(format!("{addr:?} is not a valid hostname"));
    }
    let interval = post.get(SCRAPE_INTERVAL_LABEL).unwrap_or("");
    let iv = interval
        .parse::<Duration>()
        .map_err(|e| format!("error parsing scrape interval: {e}"))?;
    if iv.0 == 0 {
        return Err("scrape interval cannot be 0".to_string());
    }
    let timeout = post.get(SCRAPE_TIMEOUT_LABEL).unwrap_or("");
    let to = timeout
        .parse::<Duration>()
        .map_err(|e| format!("error parsing scrape timeout: {e}"))?;
    if to.0 == 0 {
        return Err("scrape timeout cannot be 0".to_string());
    }
    if to > iv {
        return Err(format!(
            "scrape timeout cannot be greater than scrape interval ({timeout:?} > {interval:?})"
        ));
    }
    ls.retain(|l| !l.name.starts_with(META_LABEL_PREFIX));
    if post.get(INSTANCE_LABEL).is_none() {
        set(&mut ls, INSTANCE_LABEL, &addr);
    }
    Ok((Some(Labels::new(ls)), pre))
}

fn set(ls: &mut Vec<Label>, name: &str, value: &str) {
    match ls.iter_mut().find(|l| l.name == name) {
        Some(l) => l.value = value.to_string(),
        None => ls.push(Label::new(name, value)),
    }
}

/// Go's `net.SplitHostPort(s)` fails but `SplitHostPort(s + ":1234")` works: an address without
/// a port that can take one.
fn needs_port(s: &str) -> bool {
    split_host_port(s).is_none() && split_host_port(&format!("{s}:1234")).is_some()
}

/// Go's `net.SplitHostPort` acceptance (the parts are not needed).
fn split_host_port(s: &str) -> Option<()> {
    let i = s.rfind(':')?;
    let host = &s[..i];
    if host.starts_with('[') {
        let end = host.find(']')?;
        if end + 1 != i || host[1..end].contains('[') {
            return None;
        }
    } else if host.contains(':') || host.contains('[') || host.contains(']') {
        return None;
    }
    if s[i + 1..].contains(['[', ']']) {
        return None;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{GlobalConfig, ScrapeConfig};

    fn cfg() -> PoolConfig {
        let job = ScrapeConfig {
            job_name: "node".into(),
            metrics_path: "/metrics".into(),
            scheme: "http".into(),
            honor_timestamps: true,
            ..Default::default()
        };
        PoolConfig::resolve(&job, &GlobalConfig::default())
    }

    #[test]
    fn defaults_port_instance_and_meta_removal() {
        let mut c = cfg();
        c.job
            .params
            .insert("module".into(), vec!["a b".into(), "x".into()]);
        let ls = Labels::from_pairs(&[("__address__", "host"), ("__meta_x", "1"), ("env", "p")]);
        let (t, pre) = populate_labels(ls, &c, &[]).unwrap();
        let t = t.unwrap();
        assert_eq!(pre.get("__meta_x"), Some("1"));
        assert_eq!(pre.get("__param_module"), Some("a b"));
        assert_eq!(t.get("__address__"), Some("host:80"));
        assert_eq!(t.get("instance"), Some("host:80"));
        assert_eq!(t.get("job"), Some("node"));
        assert_eq!(t.get("__scrape_interval__"), Some("1m"));
        assert_eq!(t.get("__scrape_timeout__"), Some("10s"));
        assert_eq!(t.get("__meta_x"), None);
        let target = Target {
            discovered: pre,
            labels: t,
            params: c.job.params.clone(),
        };
        assert_eq!(target.url(), "http://host:80/metrics?module=a+b&module=x");
        assert_eq!(
            target.public_labels().to_string(),
            r#"{env="p", instance="host:80", job="node"}"#
        );
    }

    #[test]
    fn timeout_above_interval_is_refused() {
        let c = cfg();
        let ls = Labels::from_pairs(&[("__address__", "h:1"), ("__scrape_timeout__", "2m")]);
        let e = populate_labels(ls, &c, &[]).unwrap_err();
        assert!(e.contains("greater than scrape interval"), "{e}");
    }

    #[test]
    fn host_port_rules_follow_go() {
        assert!(needs_port("localhost"));
        assert!(needs_port("[::1]"));
        assert!(!needs_port("localhost:9090"));
        assert!(!needs_port("[::1]:9090"));
        assert!(!needs_port("::1"));
    }

    #[test]
    fn offset_is_within_interval_and_stable() {
        let c = cfg();
        let (t, pre) =
            populate_labels(Labels::from_pairs(&[("__address__", "h:1")]), &c, &[]).unwrap();
        let target = Target {
            discovered: pre,
            labels: t.unwrap(),
            params: Default::default(),
        };
        let iv = std::time::Duration::from_secs(15);
        let now = 1_700_000_000_123_456_789u128;
        let o = target.offset(iv, 7, now);
        assert!(o <= iv);
        // The scrape lands at the same phase whatever `now` is.
        let phase = |now: u128| (now + target.offset(iv, 7, now).as_nanos()) % iv.as_nanos();
        assert_eq!(phase(now), phase(now + 3_000_000_000));
    }

    #[test]
    fn fnv_matches_reference() {
        let mut h = Fnv64a::new();
        h.write(b"a");
        assert_eq!(h.finish(), 0xaf63dc4c8601ec8c);
    }
}
