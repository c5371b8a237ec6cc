//! The shapes `prometheus.yml` is decoded through before it becomes the public structs.
//!
//! Two reasons for a second set of structs. Serde's `deny_unknown_fields` does not work with
//! `#[serde(flatten)]` (it rejects the flattened keys, or with the flattened struct alone lets
//! unknown keys through, and either way loses the error's position), and Prometheus inlines its
//! HTTP client settings into `scrape_configs` and `remote_write` entries; spelling those keys
//! out here keeps every unknown key an error at its line. And Prometheus' YAML decoder treats `key:` with no value as the zero value
//! (an empty list, the default duration) where serde would reject a null: every field here is an
//! `Option`, so both absent and null mean "not given".

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{
    AlertingConfig, AlertmanagerConfig, Authorization, BasicAuth, Config, Duration, FileSdConfig,
    GlobalConfig, HttpClientConfig, MetadataConfig, QueueConfig, RemoteWriteConfig, ScrapeConfig,
    StaticConfig, TlsConfig,
};
use crate::relabel::RelabelConfig;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawConfig {
    global: Option<RawGlobal>,
    rule_files: Option<Vec<String>>,
    scrape_configs: Option<Vec<ScrapeConfig>>,
    remote_write: Option<Vec<RemoteWriteConfig>>,
    alerting: Option<AlertingConfig>,
}

impl From<RawConfig> for Config {
    fn from(r: RawConfig) -> Config {
        Config {
            global: r.global.map(GlobalConfig::from).unwrap_or_default(),
            rule_files: r.rule_files.unwrap_or_default(),
            scrape_configs: r.scrape_configs.unwrap_or_default(),
            remote_write: r.remote_write.unwrap_or_default(),
            alerting: r.alerting.unwrap_or_default(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawGlobal {
    scrape_interval: Option<Duration>,
    scrape_timeout: Option<Duration>,
    evaluation_interval: Option<Duration>,
    external_labels: Option<BTreeMap<String, String>>,
    query_log_file: Option<String>,
    sample_limit: Option<u64>,
    target_limit: Option<u64>,
    label_limit: Option<u64>,
    label_name_length_limit: Option<u64>,
    label_value_length_limit: Option<u64>,
}

impl From<RawGlobal> for GlobalConfig {
    /// Prometheus' `GlobalConfig.UnmarshalYAML`: a zero interval is the default one, a zero
    /// timeout the default timeout capped at the interval. (Whether the timeout exceeds the
    /// interval is checked by validation, which knows the line.)
    fn from(r: RawGlobal) -> GlobalConfig {
        let d = GlobalConfig::default();
        let nonzero = |v: Option<Duration>| v.filter(|d| d.0 != 0);
        let scrape_interval = nonzero(r.scrape_interval).unwrap_or(d.scrape_interval);
        let scrape_timeout =
            nonzero(r.scrape_timeout).unwrap_or_else(|| d.scrape_timeout.min(scrape_interval));
        GlobalConfig {
            scrape_interval,
            scrape_timeout,
            evaluation_interval: nonzero(r.evaluation_interval).unwrap_or(d.evaluation_interval),
            external_labels: r.external_labels.unwrap_or_default(),
            query_log_file: r.query_log_file.filter(|s| !s.is_empty()),
            sample_limit: r.sample_limit.unwrap_or(0),
            target_limit: r.target_limit.unwrap_or(0),
            label_limit: r.label_limit.unwrap_or(0),
            label_name_length_limit: r.label_name_length_limit.unwrap_or(0),
            label_value_length_limit: r.label_value_length_limit.unwrap_or(0),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawScrapeConfig {
    job_name: Option<String>,
    #[serde(deserialize_with = "super::yaml11_bool_opt")]
    honor_labels: Option<bool>,
    #[serde(deserialize_with = "super::yaml11_bool_opt")]
    honor_timestamps: Option<bool>,
    params: Option<BTreeMap<String, Vec<String>>>,
    scrape_interval: Option<Duration>,
    scrape_timeout: Option<Duration>,
    metrics_path: Option<String>,
    scheme: Option<String>,
    sample_limit: Option<u64>,
    target_limit: Option<u64>,
    label_limit: Option<u64>,
    label_name_length_limit: Option<u64>,
    label_value_length_limit: Option<u64>,
    static_configs: Option<Vec<StaticConfig>>,
    file_sd_configs: Option<Vec<FileSdConfig>>,
    relabel_configs: Option<Vec<RelabelConfig>>,
    metric_relabel_configs: Option<Vec<RelabelConfig>>,
    // `common/config.HTTPClientConfig`, inlined.
    basic_auth: Option<BasicAuth>,
    authorization: Option<Authorization>,
    bearer_token: Option<String>,
    bearer_token_file: Option<String>,
    tls_config: Option<TlsConfig>,
    proxy_url: Option<String>,
    #[serde(deserialize_with = "super::yaml11_bool_opt")]
    follow_redirects: Option<bool>,
    #[serde(deserialize_with = "super::yaml11_bool_opt")]
    enable_http2: Option<bool>,
}

/// The inlined `common/config.HTTPClientConfig` keys of a raw struct, with its defaults.
macro_rules! http_from_raw {
    ($r:expr) => {
        HttpClientConfig {
            basic_auth: $r.basic_auth,
            authorization: $r.authorization,
            bearer_token: $r.bearer_token.filter(|s| !s.is_empty()),
            bearer_token_file: $r.bearer_token_file.filter(|s| !s.is_empty()),
            tls_config: $r.tls_config.unwrap_or_default(),
            proxy_url: $r.proxy_url.filter(|s| !s.is_empty()),
            follow_redirects: $r.follow_redirects.unwrap_or(true),
            enable_http2: $r.enable_http2.unwrap_or(true),
        }
    };
}

impl From<RawScrapeConfig> for ScrapeConfig {
    /// Prometheus' `DefaultScrapeConfig` under what the file gives.
    fn from(r: RawScrapeConfig) -> ScrapeConfig {
        let nonzero = |v: Option<Duration>| v.filter(|d| d.0 != 0);
        ScrapeConfig {
            job_name: r.job_name.unwrap_or_default(),
            honor_labels: r.honor_labels.unwrap_or(false),
            honor_timestamps: r.honor_timestamps.unwrap_or(true),
            params: r.params.unwrap_or_default(),
            scrape_interval: nonzero(r.scrape_interval),
            scrape_timeout: nonzero(r.scrape_timeout),
            metrics_path: r.metrics_path.unwrap_or_else(|| "/metrics".to_string()),
            scheme: r.scheme.unwrap_or_else(|| "http".to_string()),
            sample_limit: r.sample_limit,
            target_limit: r.target_limit,
            label_limit: r.label_limit,
            label_name_length_limit: r.label_name_length_limit,
            label_value_length_limit: r.label_value_length_limit,
            static_configs: r.static_configs.unwrap_or_default(),
            file_sd_configs: r.file_sd_configs.unwrap_or_default(),
            relabel_configs: r.relabel_configs.unwrap_or_default(),
            metric_relabel_configs: r.metric_relabel_configs.unwrap_or_default(),
            http: http_from_raw!(r),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawRemoteWriteConfig {
    url: Option<String>,
    remote_timeout: Option<Duration>,
    headers: Option<BTreeMap<String, String>>,
    write_relabel_configs: Option<Vec<RelabelConfig>>,
    name: Option<String>,
    #[serde(deserialize_with = "super::yaml11_bool_opt")]
    send_exemplars: Option<bool>,
    queue_config: Option<QueueConfig>,
    metadata_config: Option<MetadataConfig>,
    // `common/config.HTTPClientConfig`, inlined.
    basic_auth: Option<BasicAuth>,
    authorization: Option<Authorization>,
    bearer_token: Option<String>,
    bearer_token_file: Option<String>,
    tls_config: Option<TlsConfig>,
    proxy_url: Option<String>,
    #[serde(deserialize_with = "super::yaml11_bool_opt")]
    follow_redirects: Option<bool>,
    #[serde(deserialize_with = "super::yaml11_bool_opt")]
    enable_http2: Option<bool>,
}

impl From<RawRemoteWriteConfig> for RemoteWriteConfig {
    fn from(r: RawRemoteWriteConfig) -> RemoteWriteConfig {
        let d = RemoteWriteConfig::default();
        RemoteWriteConfig {
            url: r.url.unwrap_or_default(),
            remote_timeout: r
                .remote_timeout
                .filter(|t| t.0 != 0)
                .unwrap_or(d.remote_timeout),
            headers: r.headers.unwrap_or_default(),
            write_relabel_configs: r.write_relabel_configs.unwrap_or_default(),
            name: r.name.filter(|s| !s.is_empty()),
            send_exemplars: r.send_exemplars.unwrap_or(false),
            queue_config: r.queue_config.unwrap_or_default(),
            metadata_config: r.metadata_config.unwrap_or_default(),
            http: http_from_raw!(r),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAlerting {
    alert_relabel_configs: Option<Vec<RelabelConfig>>,
    alertmanagers: Option<Vec<AlertmanagerConfig>>,
}

impl From<RawAlerting> for AlertingConfig {
    fn from(r: RawAlerting) -> AlertingConfig {
        AlertingConfig {
            alert_relabel_configs: r.alert_relabel_configs.unwrap_or_default(),
            alertmanagers: r.alertmanagers.unwrap_or_default(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAlertmanager {
    static_configs: Option<Vec<StaticConfig>>,
    file_sd_configs: Option<Vec<FileSdConfig>>,
    scheme: Option<String>,
    path_prefix: Option<String>,
    timeout: Option<Duration>,
    api_version: Option<String>,
    relabel_configs: Option<Vec<RelabelConfig>>,
    // `common/config.HTTPClientConfig`, inlined.
    basic_auth: Option<BasicAuth>,
    authorization: Option<Authorization>,
    bearer_token: Option<String>,
    bearer_token_file: Option<String>,
    tls_config: Option<TlsConfig>,
    proxy_url: Option<String>,
    #[serde(deserialize_with = "super::yaml11_bool_opt")]
    follow_redirects: Option<bool>,
    #[serde(deserialize_with = "super::yaml11_bool_opt")]
    enable_http2: Option<bool>,
}

impl From<RawAlertmanager> for AlertmanagerConfig {
    /// `DefaultAlertmanagerConfig` under what the file gives. A zero or empty timeout is the
    /// default one (Prometheus would time out every send at once). `api_version` is checked by
    /// validation, which knows the line.
    fn from(r: RawAlertmanager) -> AlertmanagerConfig {
        let d = AlertmanagerConfig::default();
        AlertmanagerConfig {
            static_configs: r.static_configs.unwrap_or_default(),
            file_sd_configs: r.file_sd_configs.unwrap_or_default(),
            relabel_configs: r.relabel_configs.unwrap_or_default(),
            scheme: r.scheme.filter(|s| !s.is_empty()).unwrap_or(d.scheme),
            path_prefix: r.path_prefix.unwrap_or_default(),
            timeout: r.timeout.filter(|t| t.0 > 0).unwrap_or(d.timeout),
            api_version: r.api_version.unwrap_or(d.api_version),
            http: http_from_raw!(r),
        }
    }
}
