//! `prometheus.yml`: the configuration file users already have for Prometheus, read into typed
//! structs with Prometheus' defaults (`config/config.go` of Prometheus 2.42 is the reference for
//! every key, default and check).
//!
//! Every struct denies unknown keys, so a typo is an error naming the key and its line instead of a
//! setting silently ignored. Durations use Prometheus' syntax (`1m30s`, no float seconds).
//! Parsing lives here, outside `server`, only as far as the types go: the scrape manager, the remote
//! writer and `tsdbctl check config` all read the same [`Config`].

mod file_sd;
mod locate;
mod raw;
pub mod rules;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::relabel::RelabelConfig;

pub use file_sd::{read_file_sd, FILE_SD_PATH_LABEL};
pub use locate::{line_of, Seg};
pub use rules::{RuleFile, RuleGroup, RuleKind, RuleSpec};
pub use validate::check_target_address;

/// Why a configuration (or a file it names) cannot be used. Each variant says which file, and
/// where in it: the YAML decoder's line and column for syntax, type and unknown-key errors, the
/// line of the offending key for errors found by validation.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not YAML, a wrong type, an unknown key: as the decoder reports it.
    #[error("{}:{line}:{column}: {message}", file.display())]
    Syntax {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// A decoder error without a position (an empty document, a flattened section).
    #[error("{}: {message}", file.display())]
    Decode { file: PathBuf, message: String },
    /// A value that decodes but is not valid. `context` is the path of the object at fault
    /// (`scrape_configs[0] (job "node")`), `line` the line of the offending key when found.
    #[error("{}{}: {context}: {message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        file: PathBuf,
        line: Option<usize>,
        context: String,
        message: String,
    },
    /// A rule file named by `rule_files` that is not valid: every problem found, each with its
    /// `line:column` in that file.
    #[error("{}: {}", file.display(), errors.join("; "))]
    RuleFile { file: PathBuf, errors: Vec<String> },
}

impl ConfigError {
    /// The line the error points at, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Syntax { line, .. } => Some(*line),
            ConfigError::Invalid { line, .. } => *line,
            _ => None,
        }
    }

    /// The file the error is about.
    pub fn file(&self) -> &Path {
        match self {
            ConfigError::Io { path, .. } => path,
            ConfigError::Syntax { file, .. }
            | ConfigError::Decode { file, .. }
            | ConfigError::Invalid { file, .. }
            | ConfigError::RuleFile { file, .. } => file,
        }
    }

    /// A decoder error, with its position kept.
    pub(crate) fn from_yaml(file: &Path, e: &serde_yaml::Error) -> ConfigError {
        let full = e.to_string();
        match e.location() {
            Some(loc) => {
                // serde_yaml appends " at line L column C"; the position goes in front instead.
                let suffix = format!(" at line {} column {}", loc.line(), loc.column());
                let message = full
                    .strip_suffix(&suffix)
                    .map(str::to_string)
                    .unwrap_or_else(|| full.clone());
                let message = explain_unsupported(message);
                ConfigError::Syntax {
                    file: file.to_path_buf(),
                    line: loc.line(),
                    column: loc.column(),
                    message,
                }
            }
            None => ConfigError::Decode {
                file: file.to_path_buf(),
                message: full,
            },
        }
    }
}

/// Keys Prometheus 2.42 accepts that tsdbctl does not implement (beyond every `*_sd_configs`
/// other than `static_configs` and `file_sd_configs`): refused, since ignoring them would run
/// with a different setup than the file says, but named as such rather than as typos.
const UNSUPPORTED_KEYS: &[&str] = &[
    "remote_read",
    "storage",
    "tracing",
    "body_size_limit",
    "oauth2",
    "proxy_connect_header",
    "send_native_histograms",
    "sigv4",
    "max_version",
];

/// Rewrites serde's "unknown field `x`, expected one of ..." for a key Prometheus knows.
fn explain_unsupported(message: String) -> String {
    let Some(start) = message.find("unknown field `") else {
        return message;
    };
    let rest = &message[start + "unknown field `".len()..];
    let Some(end) = rest.find('`') else {
        return message;
    };
    let key = &rest[..end];
    if UNSUPPORTED_KEYS.contains(&key) || (key.ends_with("_sd_configs") && key != "file_sd_configs")
    {
        format!(
            "{}`{key}` is a Prometheus setting that tsdbctl does not support",
            &message[..start]
        )
    } else {
        message
    }
}

impl Config {
    /// Reads, decodes and validates a configuration file, as Prometheus does at start and on
    /// reload: defaults filled in from `global`, relative paths resolved against the file's
    /// directory, `rule_files` globs expanded and every rule file checked.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// [`Config::load`] on text already read; `path` names the file in errors and anchors
    /// relative paths (its directory).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut cfg = Config::parse_unchecked_files(text, path)?;
        validate::expand_rule_files(&mut cfg, text, path)?;
        cfg.load_rule_files()?;
        Ok(cfg)
    }

    /// Decoding and validation of the text alone: no file named by the configuration is read
    /// and `rule_files` stay patterns. Relative paths are still resolved against `path`'s
    /// directory.
    pub fn parse_unchecked_files(text: &str, path: &Path) -> Result<Config, ConfigError> {
        // An empty document is Prometheus' default configuration.
        let mut cfg: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            serde_yaml::from_str(text).map_err(|e| ConfigError::from_yaml(path, &e))?
        };
        validate::validate(&mut cfg, text, path)?;
        let dir = path.parent().unwrap_or(Path::new(""));
        cfg.set_directory(dir);
        Ok(cfg)
    }

    /// The configuration as `/api/v1/status/config` shows it: YAML with secrets as `<secret>`.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self)
            .unwrap_or_else(|e| format!("# cannot print configuration: {e}\n"))
    }

    /// Prometheus' `SetDirectory`: relative file names are relative to the configuration file.
    fn set_directory(&mut self, dir: &Path) {
        let join = |p: &mut String| {
            if !p.is_empty() && !Path::new(p.as_str()).is_absolute() {
                *p = dir.join(p.as_str()).to_string_lossy().into_owned();
            }
        };
        let join_opt = |p: &mut Option<String>| {
            if let Some(p) = p {
                join(p)
            }
        };
        join_opt(&mut self.global.query_log_file);
        for r in &mut self.rule_files {
            join(r);
        }
        let http = |h: &mut HttpClientConfig| {
            if let Some(b) = &mut h.basic_auth {
                join_opt(&mut b.password_file);
            }
            if let Some(a) = &mut h.authorization {
                join_opt(&mut a.credentials_file);
            }
            join_opt(&mut h.bearer_token_file);
            join_opt(&mut h.tls_config.ca_file);
            join_opt(&mut h.tls_config.cert_file);
            join_opt(&mut h.tls_config.key_file);
        };
        for sc in &mut self.scrape_configs {
            http(&mut sc.http);
            for f in &mut sc.file_sd_configs {
                for p in &mut f.files {
                    join(p);
                }
            }
        }
        for rw in &mut self.remote_write {
            http(&mut rw.http);
        }
        for am in &mut self.alerting.alertmanagers {
            http(&mut am.http);
            for f in &mut am.file_sd_configs {
                for p in &mut f.files {
                    join(p);
                }
            }
        }
    }

    /// Expands the `rule_files` patterns of a configuration from
    /// [`Config::parse_unchecked_files`] (as [`Config::load`] does): a plain name must exist.
    pub fn expand_rule_files(&mut self, text: &str, path: &Path) -> Result<(), ConfigError> {
        validate::expand_rule_files(self, text, path)
    }

    /// promtool's checks of the other files a configuration names (after
    /// [`Config::parse_unchecked_files`]; `text` and `path` are that file's, for error lines):
    /// credential and client-certificate files exist, every `file_sd_configs` file that exists
    /// is a valid target file with valid targets. Returns warnings (a `file_sd` pattern that
    /// matches nothing is one, not an error: the file may appear later).
    pub fn check_referenced_files(
        &self,
        text: &str,
        path: &Path,
    ) -> Result<Vec<String>, ConfigError> {
        validate::check_referenced_files(self, text, path)
    }

    /// Reads and validates every rule file (after [`Config::load`], whose `rule_files` are
    /// already expanded and resolved).
    pub fn load_rule_files(&self) -> Result<Vec<RuleFile>, ConfigError> {
        self.rule_files
            .iter()
            .map(|f| RuleFile::load(Path::new(f)))
            .collect()
    }
}

/// The body of the `config_parse` fuzz target: decoding and validating untrusted text must never
/// panic, whatever it is.
#[doc(hidden)]
pub fn fuzz_parse_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/nonexistent-fuzz-dir/prometheus.yml");
    if let Ok(cfg) = Config::parse_unchecked_files(text, path) {
        let _ = cfg.to_yaml();
    }
    let _ = file_sd::parse_file_sd(text, path);
    let _ = RuleFile::parse(text, path);
}

#[cfg(test)]
mod tests;

/// A duration in Prometheus' syntax (`15s`, `1m30s`, `500ms`, units y w d h m s ms), stored in
/// milliseconds. Serializes back to the canonical form Prometheus prints (`1m30s`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub i64);

impl Duration {
    pub const fn from_secs(s: i64) -> Duration {
        Duration(s * 1000)
    }
    pub fn as_millis(self) -> i64 {
        self.0
    }
    pub fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0.max(0) as u64)
    }
}

impl fmt::Display for Duration {
    /// Prometheus' `model.Duration.String()`: largest units first, zero components left out,
    /// `0s` for zero.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0;
        if ms == 0 {
            return f.write_str("0s");
        }
        if ms < 0 {
            f.write_str("-")?;
            ms = -ms;
        }
        let units: [(&str, i64); 7] = [
            ("y", 31_536_000_000),
            ("w", 604_800_000),
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
            ("ms", 1),
        ];
        for (u, mult) in units {
            // Years and weeks only when exact: Prometheus prints `90d`, not `12w6d`.
            let exact_only = matches!(u, "y" | "w");
            if ms >= mult && (!exact_only || ms % mult == 0) {
                write!(f, "{}{}", ms / mult, u)?;
                ms %= mult;
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for Duration {
    type Err = String;
    fn from_str(s: &str) -> Result<Duration, String> {
        // The API's parser also takes float seconds; the configuration file does not.
        if s.is_empty() || s.contains('.') || s.parse::<f64>().is_ok() && s != "0" {
            return Err(format!("not a valid duration string: {s:?}"));
        }
        crate::api::parse_duration(s)
            .map(Duration)
            .map_err(|_| format!("not a valid duration string: {s:?}"))
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        // Parsed inside the visitor so that the YAML decoder gives the error the value's own
        // line and column, not those of the enclosing mapping.
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 15s or 1m30s")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Duration, E> {
                s.parse().map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Duration, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Duration, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Duration, E> {
                self.visit_str(&v.to_string())
            }
        }
        d.deserialize_str(V)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// The whole file.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(from = "raw::RawConfig")]
pub struct Config {
    pub global: GlobalConfig,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rule_files: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scrape_configs: Vec<ScrapeConfig>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remote_write: Vec<RemoteWriteConfig>,
    #[serde(skip_serializing_if = "AlertingConfig::is_empty")]
    pub alerting: AlertingConfig,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(from = "raw::RawGlobal")]
pub struct GlobalConfig {
    pub scrape_interval: Duration,
    pub scrape_timeout: Duration,
    pub evaluation_interval: Duration,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub external_labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_log_file: Option<String>,
    #[serde(skip_serializing_if = "is_zero")]
    pub sample_limit: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub target_limit: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub label_limit: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub label_name_length_limit: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub label_value_length_limit: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl Default for GlobalConfig {
    /// Prometheus' `DefaultGlobalConfig`.
    fn default() -> GlobalConfig {
        GlobalConfig {
            scrape_interval: Duration::from_secs(60),
            scrape_timeout: Duration::from_secs(10),
            evaluation_interval: Duration::from_secs(60),
            external_labels: BTreeMap::new(),
            query_log_file: None,
            sample_limit: 0,
            target_limit: 0,
            label_limit: 0,
            label_name_length_limit: 0,
            label_value_length_limit: 0,
        }
    }
}

/// One `scrape_configs` entry. Options left out inherit from `global` when the file is loaded
/// (`Option` here means "not given in the file").
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(from = "raw::RawScrapeConfig")]
pub struct ScrapeConfig {
    pub job_name: String,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, Vec<String>>,
    pub scrape_interval: Option<Duration>,
    pub scrape_timeout: Option<Duration>,
    pub metrics_path: String,
    pub scheme: String,
    pub sample_limit: Option<u64>,
    pub target_limit: Option<u64>,
    pub label_limit: Option<u64>,
    pub label_name_length_limit: Option<u64>,
    pub label_value_length_limit: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub static_configs: Vec<StaticConfig>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub file_sd_configs: Vec<FileSdConfig>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub relabel_configs: Vec<RelabelConfig>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metric_relabel_configs: Vec<RelabelConfig>,
    #[serde(flatten)]
    pub http: HttpClientConfig,
}

impl Default for ScrapeConfig {
    /// Prometheus' `DefaultScrapeConfig` (`/metrics`, `http`, timestamps honored); the
    /// interval, timeout and limits stay unset until a file is loaded.
    fn default() -> ScrapeConfig {
        raw::RawScrapeConfig::default().into()
    }
}

/// A target group: addresses (`host:port`) and the labels every one of them gets. Also the
/// element type of a `file_sd_configs` file (YAML or JSON).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StaticConfig {
    pub targets: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileSdConfig {
    pub files: Vec<String>,
    pub refresh_interval: Duration,
}

impl Default for FileSdConfig {
    fn default() -> FileSdConfig {
        FileSdConfig {
            files: Vec::new(),
            refresh_interval: Duration::from_secs(300),
        }
    }
}

/// `alerting:`: where alerts go (Prometheus' `AlertingConfig`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(from = "raw::RawAlerting")]
pub struct AlertingConfig {
    /// Applied to every alert (after external labels are added) before it is queued; an alert
    /// they drop is not sent.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alert_relabel_configs: Vec<RelabelConfig>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alertmanagers: Vec<AlertmanagerConfig>,
}

impl AlertingConfig {
    pub fn is_empty(&self) -> bool {
        self.alert_relabel_configs.is_empty() && self.alertmanagers.is_empty()
    }
}

/// One `alertmanagers` entry: how a set of Alertmanagers is discovered and spoken to
/// (Prometheus' `AlertmanagerConfig`, `DefaultAlertmanagerConfig` for what is left out).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(from = "raw::RawAlertmanager")]
pub struct AlertmanagerConfig {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub static_configs: Vec<StaticConfig>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub file_sd_configs: Vec<FileSdConfig>,
    /// Applied to each discovered Alertmanager (`__address__`, `__scheme__`,
    /// `__alerts_path__`, the group's labels); one they drop is listed as dropped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub relabel_configs: Vec<RelabelConfig>,
    pub scheme: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path_prefix: String,
    pub timeout: Duration,
    /// Always `v2` once validated: Prometheus 2.42 also accepts `v1`, which tsdbctl refuses.
    pub api_version: String,
    #[serde(flatten)]
    pub http: HttpClientConfig,
}

/// The only Alertmanager API version tsdbctl speaks (`/api/v2/alerts`).
pub const ALERTMANAGER_API_VERSION: &str = "v2";

impl Default for AlertmanagerConfig {
    /// Prometheus' `DefaultAlertmanagerConfig`: `http`, a 10 s timeout, API v2.
    fn default() -> AlertmanagerConfig {
        AlertmanagerConfig {
            static_configs: Vec::new(),
            file_sd_configs: Vec::new(),
            relabel_configs: Vec::new(),
            scheme: "http".to_string(),
            path_prefix: String::new(),
            timeout: Duration::from_secs(10),
            api_version: ALERTMANAGER_API_VERSION.to_string(),
            http: HttpClientConfig::default(),
        }
    }
}

/// Prometheus' `common/config.HTTPClientConfig`: how a scrape or a remote write authenticates
/// and what TLS it speaks. Flattened into the configs that use it, as in Prometheus' YAML.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpClientConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    /// Deprecated form of `authorization: {credentials: ...}`; still accepted by 2.42, and
    /// moved into `authorization` when a file is loaded, as Prometheus does.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "secret_opt")]
    pub bearer_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bearer_token_file: Option<String>,
    pub tls_config: TlsConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_url: Option<String>,
    pub follow_redirects: bool,
    pub enable_http2: bool,
}

impl Default for HttpClientConfig {
    fn default() -> HttpClientConfig {
        HttpClientConfig {
            basic_auth: None,
            authorization: None,
            bearer_token: None,
            bearer_token_file: None,
            tls_config: TlsConfig::default(),
            proxy_url: None,
            follow_redirects: true,
            enable_http2: true,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BasicAuth {
    pub username: String,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "secret_opt")]
    pub password: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Authorization {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "secret_opt")]
    pub credentials: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<String>,
}

impl Default for Authorization {
    fn default() -> Authorization {
        Authorization {
            kind: "Bearer".to_string(),
            credentials: None,
            credentials_file: None,
        }
    }
}

/// A boolean as Prometheus' YAML decoder (YAML 1.1) reads it: besides `true`/`false`, also
/// `yes`/`no`, `on`/`off`, `y`/`n` in their usual cases. Files written for Prometheus use them.
fn yaml11_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a boolean")
        }
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<bool, E> {
            match s {
                "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True"
                | "TRUE" => Ok(true),
                "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False"
                | "FALSE" => Ok(false),
                _ => Err(E::invalid_value(serde::de::Unexpected::Str(s), &self)),
            }
        }
    }
    d.deserialize_any(V)
}

/// [`yaml11_bool`] for a key that may be absent or null.
fn yaml11_bool_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<bool>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a boolean")
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Option<bool>, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Option<bool>, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<bool>, D::Error> {
            yaml11_bool(d).map(Some)
        }
    }
    d.deserialize_option(V)
}

/// Secrets print as `<secret>`, as Prometheus' `/api/v1/status/config` shows them.
fn secret_opt<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_str("<secret>"),
        None => s.serialize_none(),
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    #[serde(deserialize_with = "yaml11_bool")]
    pub insecure_skip_verify: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_version: Option<String>,
}

/// One `remote_write` entry.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(from = "raw::RawRemoteWriteConfig")]
pub struct RemoteWriteConfig {
    pub url: String,
    pub remote_timeout: Duration,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub write_relabel_configs: Vec<RelabelConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub send_exemplars: bool,
    pub queue_config: QueueConfig,
    pub metadata_config: MetadataConfig,
    #[serde(flatten)]
    pub http: HttpClientConfig,
}

impl Default for RemoteWriteConfig {
    fn default() -> RemoteWriteConfig {
        RemoteWriteConfig {
            url: String::new(),
            remote_timeout: Duration::from_secs(30),
            headers: BTreeMap::new(),
            write_relabel_configs: Vec::new(),
            name: None,
            send_exemplars: false,
            queue_config: QueueConfig::default(),
            metadata_config: MetadataConfig::default(),
            http: HttpClientConfig::default(),
        }
    }
}

/// Prometheus' `DefaultQueueConfig` (2.42).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    pub capacity: usize,
    pub max_shards: usize,
    pub min_shards: usize,
    pub max_samples_per_send: usize,
    pub batch_send_deadline: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    #[serde(deserialize_with = "yaml11_bool")]
    pub retry_on_http_429: bool,
}

impl Default for QueueConfig {
    fn default() -> QueueConfig {
        QueueConfig {
            capacity: 2500,
            max_shards: 200,
            min_shards: 1,
            max_samples_per_send: 500,
            batch_send_deadline: Duration::from_secs(5),
            min_backoff: Duration(30),
            max_backoff: Duration::from_secs(5),
            retry_on_http_429: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetadataConfig {
    #[serde(deserialize_with = "yaml11_bool")]
    pub send: bool,
    pub send_interval: Duration,
    pub max_samples_per_send: usize,
}

impl Default for MetadataConfig {
    fn default() -> MetadataConfig {
        MetadataConfig {
            send: true,
            send_interval: Duration::from_secs(60),
            max_samples_per_send: 500,
        }
    }
}
