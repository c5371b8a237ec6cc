//! The checks Prometheus 2.42 makes after decoding `prometheus.yml` (`config/config.go`,
//! `common/config.HTTPClientConfig.Validate`, `discovery/file`), plus the defaults it fills in
//! from `global`. Each error names the object at fault and the line of the key, found in the
//! text with [`super::locate`].
//!
//! A few checks are stricter than Prometheus, where Prometheus accepts a value only to fail on it
//! at run time (every scrape or send errors): `scheme` must be `http` or `https`; a
//! `remote_write` `url` must be an absolute `http(s)://` URL; a static target (of a job without
//! `relabel_configs`, which could rewrite it) must be `host` or `host:port` with a numeric port.

use std::collections::BTreeSet;
use std::path::Path;

use super::locate::{line_of, line_of_exact, Seg};
use super::{
    AlertingConfig, Authorization, Config, ConfigError, HttpClientConfig, TlsConfig,
    ALERTMANAGER_API_VERSION,
};
use crate::relabel::{self, is_valid_label_name, Action, RelabelConfig, RelabelError};

/// Headers a `remote_write` entry may not set (Prometheus' `reservedHeaders`).
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-encoding",
    "content-length",
    "content-type",
    "user-agent",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "www-authenticate",
    "accept-encoding",
    "x-prometheus-remote-write-version",
    "x-prometheus-remote-read-version",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
];

/// `tls_config.min_version` values of `common/config` 0.39.
const TLS_VERSIONS: &[&str] = &["TLS10", "TLS11", "TLS12", "TLS13"];

struct Ctx<'a> {
    text: &'a str,
    file: &'a Path,
}

impl Ctx<'_> {
    fn err(&self, path: &[Seg], context: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_path_buf(),
            line: line_of(self.text, path),
            context: context.to_string(),
            message: message.into(),
        }
    }
}

fn k(s: &str) -> Seg {
    Seg::key(s)
}

fn with(base: &[Seg], more: &[Seg]) -> Vec<Seg> {
    let mut v = base.to_vec();
    v.extend_from_slice(more);
    v
}

pub(super) fn validate(cfg: &mut Config, text: &str, file: &Path) -> Result<(), ConfigError> {
    let cx = Ctx { text, file };
    let g = &cfg.global;
    for name in g.external_labels.keys() {
        if !is_valid_label_name(name) {
            return Err(cx.err(
                &[k("global"), k("external_labels"), k(name)],
                "global",
                format!("external_labels: {name:?} is not a valid label name"),
            ));
        }
    }
    if g.scrape_timeout > g.scrape_interval {
        return Err(cx.err(
            &[k("global"), k("scrape_timeout")],
            "global",
            format!(
                "scrape_timeout {} greater than scrape_interval {}",
                g.scrape_timeout, g.scrape_interval
            ),
        ));
    }
    for (i, rf) in cfg.rule_files.iter().enumerate() {
        if !star_pattern_ok(rf) {
            return Err(cx.err(
                &[k("rule_files"), Seg::Idx(i)],
                "rule_files",
                format!("invalid rule file path {rf:?}"),
            ));
        }
    }

    let global = cfg.global.clone();
    let mut jobs = BTreeSet::new();
    for (i, sc) in cfg.scrape_configs.iter_mut().enumerate() {
        let base = [k("scrape_configs"), Seg::Idx(i)];
        let ctx = if sc.job_name.is_empty() {
            format!("scrape_configs[{i}]")
        } else {
            format!("scrape_configs[{i}] (job {:?})", sc.job_name)
        };
        if sc.job_name.is_empty() {
            return Err(cx.err(&base, &ctx, "job_name is empty"));
        }
        validate_http(&cx, &base, &ctx, &mut sc.http)?;
        if sc.scheme != "http" && sc.scheme != "https" {
            return Err(cx.err(
                &with(&base, &[k("scheme")]),
                &ctx,
                format!("scheme {:?} is not supported: http or https", sc.scheme),
            ));
        }
        for (j, group) in sc.static_configs.iter().enumerate() {
            let gpath = with(&base, &[k("static_configs"), Seg::Idx(j)]);
            for name in group.labels.keys() {
                if !is_valid_label_name(name) {
                    return Err(cx.err(
                        &with(&gpath, &[k("labels"), k(name)]),
                        &ctx,
                        format!("{name:?} is not a valid label name"),
                    ));
                }
            }
            if sc.relabel_configs.is_empty() {
                for (t, target) in group.targets.iter().enumerate() {
                    if let Err(m) = check_target_address(target) {
                        return Err(cx.err(
                            &with(&gpath, &[k("targets"), Seg::Idx(t)]),
                            &ctx,
                            format!("static_configs[{j}].targets[{t}]: {m}"),
                        ));
                    }
                }
            }
        }
        for (j, fsd) in sc.file_sd_configs.iter().enumerate() {
            let fpath = with(&base, &[k("file_sd_configs"), Seg::Idx(j)]);
            if fsd.files.is_empty() {
                return Err(cx.err(
                    &fpath,
                    &ctx,
                    "file service discovery config must contain at least one path name",
                ));
            }
            for (f, name) in fsd.files.iter().enumerate() {
                if !file_sd_name_ok(name) {
                    return Err(cx.err(
                        &with(&fpath, &[k("files"), Seg::Idx(f)]),
                        &ctx,
                        format!("path name {name:?} is not valid for file discovery"),
                    ));
                }
            }
        }
        check_relabel(&cx, &base, "relabel_configs", &ctx, &sc.relabel_configs)?;
        check_relabel(
            &cx,
            &base,
            "metric_relabel_configs",
            &ctx,
            &sc.metric_relabel_configs,
        )?;

        // Prometheus' global overrides: first the interval, then the timeout (explicit or
        // inferred) against it.
        let interval = sc.scrape_interval.unwrap_or(global.scrape_interval);
        sc.scrape_interval = Some(interval);
        if let Some(t) = sc.scrape_timeout {
            if t > interval {
                return Err(cx.err(
                    &with(&base, &[k("scrape_timeout")]),
                    &ctx,
                    format!("scrape_timeout {t} greater than scrape_interval {interval}"),
                ));
            }
        }
        let timeout = sc
            .scrape_timeout
            .unwrap_or(if global.scrape_timeout > interval {
                interval
            } else {
                global.scrape_timeout
            });
        sc.scrape_timeout = Some(timeout);
        sc.sample_limit.get_or_insert(global.sample_limit);
        sc.target_limit.get_or_insert(global.target_limit);
        sc.label_limit.get_or_insert(global.label_limit);
        sc.label_name_length_limit
            .get_or_insert(global.label_name_length_limit);
        sc.label_value_length_limit
            .get_or_insert(global.label_value_length_limit);

        if !jobs.insert(sc.job_name.clone()) {
            return Err(cx.err(
                &with(&base, &[k("job_name")]),
                &ctx,
                format!(
                    "found multiple scrape configs with job name {:?}",
                    sc.job_name
                ),
            ));
        }
    }

    validate_alerting(&cx, &mut cfg.alerting)?;

    let mut names = BTreeSet::new();
    for (i, rw) in cfg.remote_write.iter_mut().enumerate() {
        let base = [k("remote_write"), Seg::Idx(i)];
        let ctx = match &rw.name {
            Some(n) => format!("remote_write[{i}] (name {n:?})"),
            None => format!("remote_write[{i}]"),
        };
        if rw.url.is_empty() {
            return Err(cx.err(&base, &ctx, "url for remote_write is empty"));
        }
        if let Err(m) = check_http_url(&rw.url) {
            return Err(cx.err(&with(&base, &[k("url")]), &ctx, format!("url: {m}")));
        }
        check_relabel(
            &cx,
            &base,
            "write_relabel_configs",
            &ctx,
            &rw.write_relabel_configs,
        )?;
        for h in rw.headers.keys() {
            let lower = h.to_lowercase();
            let path = with(&base, &[k("headers"), k(h)]);
            if lower == "authorization" {
                return Err(cx.err(&path, &ctx, "authorization header must be changed via the basic_auth, authorization, oauth2, or sigv4 parameter"));
            }
            if RESERVED_HEADERS.contains(&lower.as_str()) {
                return Err(cx.err(
                    &path,
                    &ctx,
                    format!("{h} is a reserved header. It must not be changed"),
                ));
            }
        }
        validate_http(&cx, &base, &ctx, &mut rw.http)?;
        if let Some(n) = &rw.name {
            if !names.insert(n.clone()) {
                return Err(cx.err(
                    &with(&base, &[k("name")]),
                    &ctx,
                    format!("found multiple remote write configs with job name {n:?}"),
                ));
            }
        }
    }
    Ok(())
}

/// `alerting:`: Prometheus' checks of `AlertingConfig` and `AlertmanagerConfig`, and the
/// API version tsdbctl speaks.
fn validate_alerting(cx: &Ctx<'_>, a: &mut AlertingConfig) -> Result<(), ConfigError> {
    let base = [k("alerting")];
    check_relabel(
        cx,
        &base,
        "alert_relabel_configs",
        "alerting",
        &a.alert_relabel_configs,
    )?;
    for (i, am) in a.alertmanagers.iter_mut().enumerate() {
        let base = [k("alerting"), k("alertmanagers"), Seg::Idx(i)];
        let ctx = format!("alerting.alertmanagers[{i}]");
        match am.api_version.as_str() {
            ALERTMANAGER_API_VERSION => {}
            // Accepted by Prometheus 2.42 (deprecated there, gone from Alertmanager 0.27 and
            // Prometheus 3): refused rather than sent to an endpoint we do not implement.
            "v1" => {
                return Err(cx.err(
                    &with(&base, &[k("api_version")]),
                    &ctx,
                    "api_version v1 is not supported by tsdbctl, which speaks only the \
                     Alertmanager API v2 (Alertmanager 0.16 and later): use api_version: v2",
                ))
            }
            v => {
                return Err(cx.err(
                    &with(&base, &[k("api_version")]),
                    &ctx,
                    format!("expected Alertmanager api version to be one of [v1 v2] but got {v}"),
                ))
            }
        }
        if am.scheme != "http" && am.scheme != "https" {
            return Err(cx.err(
                &with(&base, &[k("scheme")]),
                &ctx,
                format!("scheme {:?} is not supported: http or https", am.scheme),
            ));
        }
        validate_http(cx, &base, &ctx, &mut am.http)?;
        check_relabel(cx, &base, "relabel_configs", &ctx, &am.relabel_configs)?;
        if am.relabel_configs.is_empty() {
            for (j, group) in am.static_configs.iter().enumerate() {
                for (t, target) in group.targets.iter().enumerate() {
                    if target.contains('/') {
                        return Err(cx.err(
                            &with(
                                &base,
                                &[k("static_configs"), Seg::Idx(j), k("targets"), Seg::Idx(t)],
                            ),
                            &ctx,
                            format!("{target:?} is not a valid hostname"),
                        ));
                    }
                }
            }
        }
        for (j, group) in am.static_configs.iter().enumerate() {
            for name in group.labels.keys() {
                if !is_valid_label_name(name) {
                    return Err(cx.err(
                        &with(
                            &base,
                            &[k("static_configs"), Seg::Idx(j), k("labels"), k(name)],
                        ),
                        &ctx,
                        format!("{name:?} is not a valid label name"),
                    ));
                }
            }
        }
        for (j, fsd) in am.file_sd_configs.iter().enumerate() {
            let fpath = with(&base, &[k("file_sd_configs"), Seg::Idx(j)]);
            if fsd.files.is_empty() {
                return Err(cx.err(&fpath, &ctx, "file_sd_configs: no files given"));
            }
            for (f, name) in fsd.files.iter().enumerate() {
                if !file_sd_name_ok(name) {
                    return Err(cx.err(
                        &with(&fpath, &[k("files"), Seg::Idx(f)]),
                        &ctx,
                        format!("path name {name:?} is not valid for file discovery"),
                    ));
                }
            }
        }
    }
    Ok(())
}

fn check_relabel(
    cx: &Ctx<'_>,
    base: &[Seg],
    key: &str,
    ctx: &str,
    cfgs: &[RelabelConfig],
) -> Result<(), ConfigError> {
    // Prometheus compares a keepequal/dropequal rule's regex with the default by pointer, so
    // any `regex:` written in the file is refused, even `(.*)`: only the text shows it.
    for (i, c) in cfgs.iter().enumerate() {
        if matches!(c.action, Action::KeepEqual | Action::DropEqual) {
            let path = with(base, &[k(key), Seg::Idx(i), k("regex")]);
            if line_of_exact(cx.text, &path).is_some() {
                let e = RelabelError::OnlySourceAndTarget { action: c.action };
                return Err(cx.err(&path, ctx, format!("{key}[{i}]: {e}")));
            }
        }
    }
    if let Err(e) = relabel::compile(cfgs) {
        let idx = e.rule_index().unwrap_or(0);
        let mut path = with(base, &[k(key), Seg::Idx(idx)]);
        if let Some(f) = e.field() {
            path.push(k(f));
        }
        return Err(cx.err(&path, ctx, format!("{key}[{idx}]: {}", describe(&e))));
    }
    Ok(())
}

fn describe(e: &RelabelError) -> String {
    e.inner().to_string()
}

/// `HTTPClientConfig.Validate` of `common/config` 0.39, including its rewrite of the deprecated
/// `bearer_token`/`bearer_token_file` into `authorization`, and the TLS settings.
fn validate_http(
    cx: &Ctx<'_>,
    base: &[Seg],
    ctx: &str,
    h: &mut HttpClientConfig,
) -> Result<(), ConfigError> {
    let e = |key: &str, m: &str| cx.err(&with(base, &[k(key)]), ctx, m.to_string());
    let bearer = h.bearer_token.as_deref().is_some_and(|s| !s.is_empty());
    let bearer_file = h
        .bearer_token_file
        .as_deref()
        .is_some_and(|s| !s.is_empty());
    if bearer && bearer_file {
        return Err(e(
            "bearer_token_file",
            "at most one of bearer_token & bearer_token_file must be configured",
        ));
    }
    if h.basic_auth.is_some() && (bearer || bearer_file) {
        return Err(e(
            "basic_auth",
            "at most one of basic_auth, oauth2, bearer_token & bearer_token_file must be configured",
        ));
    }
    if let Some(b) = &h.basic_auth {
        let pw = b.password.as_deref().is_some_and(|s| !s.is_empty());
        let pwf = b.password_file.as_deref().is_some_and(|s| !s.is_empty());
        if pw && pwf {
            return Err(cx.err(
                &with(base, &[k("basic_auth"), k("password_file")]),
                ctx,
                "at most one of basic_auth password & password_file must be configured",
            ));
        }
    }
    if let Some(a) = &mut h.authorization {
        if bearer || bearer_file {
            return Err(e(
                "authorization",
                "authorization is not compatible with bearer_token & bearer_token_file",
            ));
        }
        let c = a.credentials.as_deref().is_some_and(|s| !s.is_empty());
        let cf = a.credentials_file.as_deref().is_some_and(|s| !s.is_empty());
        if c && cf {
            return Err(cx.err(
                &with(base, &[k("authorization"), k("credentials_file")]),
                ctx,
                "at most one of authorization credentials & credentials_file must be configured",
            ));
        }
        a.kind = a.kind.trim().to_string();
        if a.kind.is_empty() {
            a.kind = "Bearer".to_string();
        }
        if a.kind.eq_ignore_ascii_case("basic") {
            return Err(cx.err(
                &with(base, &[k("authorization"), k("type")]),
                ctx,
                r#"authorization type cannot be set to "basic", use "basic_auth" instead"#,
            ));
        }
        if h.basic_auth.is_some() {
            return Err(e(
                "authorization",
                "at most one of basic_auth, oauth2 & authorization must be configured",
            ));
        }
    } else if bearer {
        h.authorization = Some(Authorization {
            kind: "Bearer".to_string(),
            credentials: h.bearer_token.take(),
            credentials_file: None,
        });
    } else if bearer_file {
        h.authorization = Some(Authorization {
            kind: "Bearer".to_string(),
            credentials: None,
            credentials_file: h.bearer_token_file.take(),
        });
    }
    if let Some(p) = &h.proxy_url {
        if let Err(m) = check_url(p) {
            return Err(e("proxy_url", &format!("proxy_url: {m}")));
        }
    }
    validate_tls(cx, &with(base, &[k("tls_config")]), ctx, &h.tls_config)
}

fn validate_tls(cx: &Ctx<'_>, base: &[Seg], ctx: &str, t: &TlsConfig) -> Result<(), ConfigError> {
    if let Some(v) = &t.min_version {
        if !TLS_VERSIONS.contains(&v.as_str()) {
            return Err(cx.err(
                &with(base, &[k("min_version")]),
                ctx,
                format!("unknown TLS version: {v}"),
            ));
        }
    }
    let has = |o: &Option<String>| o.as_deref().is_some_and(|s| !s.is_empty());
    if has(&t.cert_file) && !has(&t.key_file) {
        return Err(cx.err(
            &with(base, &[k("cert_file")]),
            ctx,
            format!(
                "client cert file {:?} specified without client key file",
                t.cert_file.as_deref().unwrap_or("")
            ),
        ));
    }
    if has(&t.key_file) && !has(&t.cert_file) {
        return Err(cx.err(
            &with(base, &[k("key_file")]),
            ctx,
            format!(
                "client key file {:?} specified without client cert file",
                t.key_file.as_deref().unwrap_or("")
            ),
        ));
    }
    Ok(())
}

/// Prometheus' `patRulePath`, `^[^*]*(\*[^/]*)?$`: at most one `*`, and no `/` after it.
fn star_pattern_ok(s: &str) -> bool {
    match s.find('*') {
        None => true,
        Some(i) => !s[i + 1..].contains('*') && !s[i + 1..].contains('/'),
    }
}

/// Prometheus' `patFileSDName`: the same rule for `*`, then a `.json`, `.yml` or `.yaml`
/// extension (all lower or all upper case).
fn file_sd_name_ok(s: &str) -> bool {
    const EXTS: [&str; 6] = [".json", ".yml", ".yaml", ".JSON", ".YML", ".YAML"];
    EXTS.iter()
        .any(|e| s.strip_suffix(e).is_some_and(star_pattern_ok))
}

/// A static target: Prometheus rejects a `/` (a URL pasted as a target) and an empty address;
/// beyond that it would fail only at scrape time, so this also wants `host` or `host:port` with
/// a port in 1..=65535 (IPv6 in brackets).
pub fn check_target_address(addr: &str) -> Result<(), String> {
    if addr.is_empty() {
        return Err("no address".to_string());
    }
    if addr.contains('/') {
        return Err(format!("{addr:?} is not a valid hostname"));
    }
    if addr.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{addr:?} is not a valid host:port address"));
    }
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let Some((h, after)) = rest.split_once(']') else {
            return Err(format!("{addr:?}: missing ']' in address"));
        };
        match after {
            "" => (h, None),
            p => match p.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None => return Err(format!("{addr:?} is not a valid host:port address")),
            },
        }
    } else {
        match addr.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            Some(_) => return Err(format!("{addr:?}: too many colons in address")),
            None => (addr, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{addr:?}: missing host"));
    }
    if let Some(p) = port {
        match p.parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) && !p.starts_with('+') => {}
            _ => return Err(format!("{addr:?}: invalid port {p:?}")),
        }
    }
    Ok(())
}

/// A URL with a scheme (`proxy_url`): Go's `url.Parse` error for a missing one.
fn check_url(s: &str) -> Result<(), String> {
    match s.split_once("://") {
        Some((scheme, _))
            if !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            Ok(())
        }
        _ => Err(format!("parse {s:?}: missing protocol scheme")),
    }
}

/// An absolute `http://` or `https://` URL with a host.
fn check_http_url(s: &str) -> Result<(), String> {
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .ok_or_else(|| format!("{s:?} is not an http:// or https:// URL"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or(authority);
    if host.is_empty() {
        return Err(format!("{s:?} has no host"));
    }
    if host.chars().any(|c| c.is_whitespace()) {
        return Err(format!("{s:?} is not a valid URL"));
    }
    Ok(())
}

/// Expands `rule_files` (already resolved against the file's directory) as promtool does: a
/// pattern with `*` may match nothing; a plain name must exist.
pub(super) fn expand_rule_files(
    cfg: &mut Config,
    text: &str,
    file: &Path,
) -> Result<(), ConfigError> {
    let cx = Ctx { text, file };
    let mut out = Vec::new();
    for (i, pat) in cfg.rule_files.iter().enumerate() {
        let path = [k("rule_files"), Seg::Idx(i)];
        if pat.contains('*') {
            let matches = glob::glob(pat)
                .map_err(|e| cx.err(&path, "rule_files", format!("{pat:?}: {e}")))?;
            let mut found: Vec<String> = matches
                .filter_map(|m| m.ok())
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            found.sort();
            out.extend(found);
        } else {
            if !Path::new(pat).exists() {
                return Err(cx.err(
                    &path,
                    "rule_files",
                    format!("{pat:?} does not point to an existing file"),
                ));
            }
            out.push(pat.clone());
        }
    }
    cfg.rule_files = out;
    Ok(())
}

pub(super) fn check_referenced_files(
    cfg: &Config,
    text: &str,
    file: &Path,
) -> Result<Vec<String>, ConfigError> {
    let cx = Ctx { text, file };
    let mut warnings = Vec::new();
    let exists = |p: &Option<String>| -> Result<(), String> {
        match p.as_deref() {
            Some(f) if !f.is_empty() => std::fs::metadata(f).map(|_| ()).map_err(|e| e.to_string()),
            _ => Ok(()),
        }
    };
    for (i, sc) in cfg.scrape_configs.iter().enumerate() {
        let base = [k("scrape_configs"), Seg::Idx(i)];
        let ctx = format!("scrape_configs[{i}] (job {:?})", sc.job_name);
        if let Some(a) = &sc.http.authorization {
            if let Err(e) = exists(&a.credentials_file) {
                let key = if text.contains("bearer_token_file") {
                    "bearer_token_file"
                } else {
                    "authorization"
                };
                return Err(cx.err(
                    &with(&base, &[k(key)]),
                    &ctx,
                    format!(
                        "error checking authorization credentials or bearer token file {:?}: {e}",
                        a.credentials_file.as_deref().unwrap_or("")
                    ),
                ));
            }
        }
        let tls = &sc.http.tls_config;
        for (key, f, what) in [
            ("cert_file", &tls.cert_file, "client cert file"),
            ("key_file", &tls.key_file, "client key file"),
        ] {
            if let Err(e) = exists(f) {
                return Err(cx.err(
                    &with(&base, &[k("tls_config"), k(key)]),
                    &ctx,
                    format!(
                        "error checking {what} {:?}: {e}",
                        f.as_deref().unwrap_or("")
                    ),
                ));
            }
        }
        for (j, fsd) in sc.file_sd_configs.iter().enumerate() {
            for (n, pat) in fsd.files.iter().enumerate() {
                let path = with(
                    &base,
                    &[k("file_sd_configs"), Seg::Idx(j), k("files"), Seg::Idx(n)],
                );
                let found: Vec<std::path::PathBuf> = glob::glob(pat)
                    .map(|m| m.filter_map(|p| p.ok()).collect())
                    .unwrap_or_default();
                if found.is_empty() {
                    warnings.push(format!(
                        "file {pat:?} for file_sd in scrape job {:?} does not exist",
                        sc.job_name
                    ));
                    continue;
                }
                for f in found {
                    let groups = super::read_file_sd(&f).map_err(|e| {
                        cx.err(&path, &ctx, format!("checking SD file {pat:?}: {e}"))
                    })?;
                    if !sc.relabel_configs.is_empty() {
                        continue;
                    }
                    for (g, group) in groups.iter().enumerate() {
                        for (t, target) in group.targets.iter().enumerate() {
                            if let Err(m) = check_target_address(target) {
                                return Err(cx.err(
                                    &path,
                                    &ctx,
                                    format!("{}: instance {t} in group {g}: {m}", f.display()),
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    for (i, am) in cfg.alerting.alertmanagers.iter().enumerate() {
        let base = [k("alerting"), k("alertmanagers"), Seg::Idx(i)];
        let ctx = format!("alerting.alertmanagers[{i}]");
        for (j, fsd) in am.file_sd_configs.iter().enumerate() {
            for (n, pat) in fsd.files.iter().enumerate() {
                let path = with(
                    &base,
                    &[k("file_sd_configs"), Seg::Idx(j), k("files"), Seg::Idx(n)],
                );
                let found: Vec<std::path::PathBuf> = glob::glob(pat)
                    .map(|m| m.filter_map(|p| p.ok()).collect())
                    .unwrap_or_default();
                if found.is_empty() {
                    warnings.push(format!(
                        "file {pat:?} for file_sd in alertmanager config does not exist"
                    ));
                }
                for f in found {
                    super::read_file_sd(&f).map_err(|e| {
                        cx.err(&path, &ctx, format!("checking SD file {pat:?}: {e}"))
                    })?;
                }
            }
        }
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_path_and_file_sd_patterns() {
        assert!(star_pattern_ok("rules/*.yml"));
        assert!(star_pattern_ok("a.yml"));
        assert!(!star_pattern_ok("*/a.yml"));
        assert!(!star_pattern_ok("a**"));
        assert!(file_sd_name_ok("targets/*.json"));
        assert!(file_sd_name_ok("t.YAML"));
        assert!(!file_sd_name_ok("t.txt"));
        assert!(!file_sd_name_ok("t.Json"));
        assert!(!file_sd_name_ok("*/t.json"));
    }

    #[test]
    fn target_addresses() {
        for ok in ["localhost", "a:80", "[::1]:9090", "[::1]", "10.0.0.1:65535"] {
            assert!(check_target_address(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "http://a:80",
            "a:b:c",
            ":80",
            "a:0",
            "a:99999",
            "a:x",
            "a b:1",
            "[::1",
        ] {
            assert!(check_target_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls() {
        assert!(check_http_url("http://localhost:8428/api/v1/write").is_ok());
        assert!(check_http_url("https://u:p@h/x").is_ok());
        assert!(check_http_url("foo").is_err());
        assert!(check_http_url("http:///x").is_err());
        assert!(check_url("http://proxy:3128").is_ok());
        assert!(check_url("::").is_err());
    }
}
