//! `--web.config.file`: Prometheus' web-configuration format (exporter-toolkit v0.8, the version
//! Prometheus 2.42 uses; `docs/web-configuration.md` there): `tls_server_config`,
//! `http_server_config` and `basic_auth_users` (name → bcrypt hash).
//!
//! Exists so that the whole HTTP surface — every endpoint, the other components' routes
//! included — sits behind one TLS and basic-auth layer, configured as users already configure
//! Prometheus. Unknown keys are rejected (exporter-toolkit reads the file with
//! `yaml.UnmarshalStrict`); relative certificate paths are taken from the file's directory.
//!
//! Differences from exporter-toolkit, each reported as an error rather than silently ignored:
//! TLS 1.0/1.1, `cipher_suites`, `curve_preferences` and the client-auth policies that accept
//! unverified certificates (`RequestClientCert`, `RequireAnyClientCert`) are not offered by
//! rustls' safe API. exporter-toolkit re-reads the file on every request and handshake; the
//! server (`super::LiveConfig`) re-reads it, and the certificate files, when one of them changed.

use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Entries of the bcrypt verification cache (exporter-toolkit's `cacheSize`).
pub const AUTH_CACHE_SIZE: usize = 100;

/// A hash compared against when the user is unknown, so that an unknown user costs as much time as
/// a wrong password (exporter-toolkit does the same).
const DUMMY_HASH: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";

/// Response headers `http_server_config.headers` may set, with their allowed values (any value
/// when empty), as exporter-toolkit's `extraHTTPHeaders`.
const EXTRA_HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// serde_yaml's message carries the line and column.
    #[error("{path}: {message}")]
    Yaml { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    tls_server_config: RawTls,
    #[serde(default)]
    http_server_config: RawHttp,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    #[serde(default)]
    cert_file: String,
    #[serde(default)]
    key_file: String,
    #[serde(default)]
    client_auth_type: String,
    #[serde(default)]
    client_ca_file: String,
    #[serde(default)]
    cipher_suites: Vec<String>,
    #[serde(default)]
    curve_preferences: Vec<String>,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    max_version: Option<String>,
    #[serde(default)]
    prefer_server_cipher_suites: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default)]
    http2: Option<bool>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// A validated web configuration.
#[derive(Clone, Debug)]
pub struct WebConfig {
    /// `None`: plain HTTP (no `tls_server_config`).
    pub tls: Option<TlsSettings>,
    /// Offer HTTP/2 over TLS (ALPN `h2`).
    pub http2: bool,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
    /// User name → bcrypt hash; empty: no authentication.
    pub users: BTreeMap<String, String>,
}

#[derive(Clone, Debug)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_auth: ClientAuth,
    pub client_ca_file: Option<PathBuf>,
    /// TLS 1.2 is accepted (`min_version: TLS12`, the default).
    pub tls12: bool,
    /// TLS 1.3 is accepted (`max_version: TLS13`, the default).
    pub tls13: bool,
    pub prefer_server_cipher_suites: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    NoClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

impl WebConfig {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let dir = path.parent().unwrap_or(Path::new(""));
        WebConfig::parse(&text, dir).map_err(|e| match e {
            ParseError::Yaml(message) => WebConfigError::Yaml {
                path: path.to_path_buf(),
                message,
            },
            ParseError::Invalid(message) => WebConfigError::Invalid {
                path: path.to_path_buf(),
                message,
            },
        })
    }

    /// [`WebConfig::parse`] of arbitrary text (fuzzing).
    #[doc(hidden)]
    pub fn parse_for_fuzz(text: &str) -> bool {
        WebConfig::parse(text, Path::new("/nonexistent")).is_ok()
    }

    /// Parses the file's text; relative paths are joined to `dir`.
    fn parse(text: &str, dir: &Path) -> Result<WebConfig, ParseError> {
        // An empty file (or one with only comments) is a valid, empty configuration.
        let raw: RawConfig = if text.trim().is_empty() {
            RawConfig::default()
        } else {
            serde_yaml::from_str::<Option<RawConfig>>(text)
                .map_err(|e| ParseError::Yaml(e.to_string()))?
                .unwrap_or_default()
        };
        let invalid = |m: String| ParseError::Invalid(m);
        let mut headers = Vec::new();
        for (k, v) in &raw.http_server_config.headers {
            let Some((_, allowed)) = EXTRA_HEADERS.iter().find(|(h, _)| h == k) else {
                return Err(invalid(format!("HTTP header {k:?} can not be configured")));
            };
            if !allowed.is_empty() && !allowed.contains(&v.as_str()) {
                return Err(invalid(format!(
                    "invalid value for {k}. Expected one of: {allowed:?}, but got: {v:?}"
                )));
            }
            headers.push((k.clone(), v.clone()));
        }
        let users = raw.basic_auth_users.unwrap_or_default();
        for (user, hash) in &users {
            if hash.parse::<bcrypt::HashParts>().is_err() {
                return Err(invalid(format!(
                    "basic_auth_users: the password of {user:?} is not a bcrypt hash"
                )));
            }
        }
        let tls = tls_settings(&raw.tls_server_config, dir).map_err(invalid)?;
        Ok(WebConfig {
            tls,
            http2: raw.http_server_config.http2.unwrap_or(true),
            headers,
            users,
        })
    }
}

/// Plain HTTP, no authentication, HTTP/2 on: what no `--web.config.file` means.
impl Default for WebConfig {
    fn default() -> WebConfig {
        WebConfig {
            tls: None,
            http2: true,
            headers: Vec::new(),
            users: BTreeMap::new(),
        }
    }
}

enum ParseError {
    Yaml(String),
    Invalid(String),
}

/// exporter-toolkit's `config_util.JoinDir`: relative, non-empty paths are relative to the file.
fn join_dir(dir: &Path, p: &str) -> Option<PathBuf> {
    if p.is_empty() {
        return None;
    }
    let p = Path::new(p);
    Some(if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    })
}

fn tls_settings(t: &RawTls, dir: &Path) -> Result<Option<TlsSettings>, String> {
    if t.cert_file.is_empty()
        && t.key_file.is_empty()
        && t.client_auth_type.is_empty()
        && t.client_ca_file.is_empty()
    {
        return Ok(None);
    }
    let cert_file = join_dir(dir, &t.cert_file).ok_or("missing cert_file")?;
    let key_file = join_dir(dir, &t.key_file).ok_or("missing key_file")?;
    let client_auth = match t.client_auth_type.as_str() {
        "" | "NoClientCert" => ClientAuth::NoClientCert,
        "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
        "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
        "RequestClientCert" | "RequireAnyClientCert" | "RequireClientCert" => {
            return Err(format!(
                "client_auth_type {:?} (client certificates accepted unverified) is not supported: use RequireAndVerifyClientCert or VerifyClientCertIfGiven",
                t.client_auth_type
            ))
        }
        other => return Err(format!("Invalid ClientAuth: {other}")),
    };
    let client_ca_file = join_dir(dir, &t.client_ca_file);
    if client_ca_file.is_some() && client_auth == ClientAuth::NoClientCert {
        return Err("Client CA's have been configured without a Client Auth Policy".into());
    }
    if client_ca_file.is_none() && client_auth != ClientAuth::NoClientCert {
        return Err(format!(
            "client_auth_type {:?} needs client_ca_file",
            t.client_auth_type
        ));
    }
    if !t.cipher_suites.is_empty() {
        return Err("cipher_suites is not supported (rustls chooses among its safe suites)".into());
    }
    if !t.curve_preferences.is_empty() {
        return Err("curve_preferences is not supported".into());
    }
    let version = |v: &Option<String>, default: u8| -> Result<u8, String> {
        match v.as_deref() {
            None => Ok(default),
            Some("TLS12") => Ok(12),
            Some("TLS13") => Ok(13),
            Some("TLS10" | "TLS11") => Err(format!("TLS version {v:?} is not supported")),
            Some(other) => Err(format!("unknown TLS version: {other}")),
        }
    };
    let min = version(&t.min_version, 12)?;
    let max = version(&t.max_version, 13)?;
    if min > max {
        return Err("min_version is above max_version".into());
    }
    Ok(Some(TlsSettings {
        cert_file,
        key_file,
        client_auth,
        client_ca_file,
        tls12: min <= 12,
        tls13: max >= 13,
        prefer_server_cipher_suites: t.prefer_server_cipher_suites.unwrap_or(true),
    }))
}

impl TlsSettings {
    /// The rustls server configuration: certificate chain and key read now, client verification,
    /// protocol versions, ALPN.
    pub fn server_config(&self, http2: bool) -> Result<rustls::ServerConfig, String> {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
        let certs: Vec<CertificateDer<'static>> =
            rustls_pemfile::certs(&mut read(&self.cert_file)?.as_slice())
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{}: {e}", self.cert_file.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "{}: no certificate in the file",
                self.cert_file.display()
            ));
        }
        let key: PrivateKeyDer<'static> =
            rustls_pemfile::private_key(&mut read(&self.key_file)?.as_slice())
                .map_err(|e| format!("{}: {e}", self.key_file.display()))?
                .ok_or_else(|| {
                    format!("{}: no private key in the file", self.key_file.display())
                })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
        if self.tls13 {
            versions.push(&rustls::version::TLS13);
        }
        if self.tls12 {
            versions.push(&rustls::version::TLS12);
        }
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| e.to_string())?;
        let builder = match (&self.client_ca_file, self.client_auth) {
            (Some(ca), auth) if auth != ClientAuth::NoClientCert => {
                let mut roots = rustls::RootCertStore::empty();
                for c in rustls_pemfile::certs(&mut read(ca)?.as_slice()) {
                    let c = c.map_err(|e| format!("{}: {e}", ca.display()))?;
                    roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
                }
                let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                );
                let v = if auth == ClientAuth::VerifyClientCertIfGiven {
                    v.allow_unauthenticated()
                } else {
                    v
                };
                builder.with_client_cert_verifier(v.build().map_err(|e| e.to_string())?)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut cfg = builder
            .with_single_cert(certs, key)
            .map_err(|e| format!("{}: {e}", self.cert_file.display()))?;
        cfg.ignore_client_order = self.prefer_server_cipher_suites;
        cfg.alpn_protocols = if http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        Ok(cfg)
    }
}

/// Basic-auth verification with exporter-toolkit's cache of bcrypt results (bcrypt at cost 10
/// takes ~70 ms: without the cache every request would pay it).
#[derive(Debug, Default)]
pub struct Authenticator {
    users: BTreeMap<String, String>,
    cache: Mutex<HashMap<(String, String), bool>>,
}

impl Authenticator {
    pub fn new(users: BTreeMap<String, String>) -> Authenticator {
        Authenticator {
            users,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Whether requests must authenticate.
    pub fn enabled(&self) -> bool {
        !self.users.is_empty()
    }

    /// Checks a user and password; bcrypt runs only on a cache miss (call from a blocking
    /// context: a miss takes as long as the hash's cost says).
    pub fn check(&self, user: &str, pass: &str) -> bool {
        let known = self.users.get(user);
        let hash = known.map_or(DUMMY_HASH, String::as_str);
        let key = (user.to_string(), pass.to_string());
        if let Some(&ok) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return ok && known.is_some();
        }
        // bcrypt runs for an unknown user too, so that timing does not tell which users exist.
        let ok = bcrypt::verify(pass, hash).unwrap_or(false) && known.is_some();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= AUTH_CACHE_SIZE {
            // exporter-toolkit drops ~10% at random; any entry will do, the map's order is random.
            let drop: Vec<_> = cache
                .keys()
                .take(AUTH_CACHE_SIZE / 10 + 1)
                .cloned()
                .collect();
            for k in drop {
                cache.remove(&k);
            }
        }
        cache.insert(key, ok);
        ok
    }

    /// Whether the result for (user, pass) is cached (tests).
    pub fn is_cached(&self, user: &str, pass: &str) -> bool {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&(user.to_string(), pass.to_string()))
    }
}

/// Decodes an `Authorization: Basic ...` header value into (user, password), as Go's
/// `Request.BasicAuth`.
pub fn parse_basic_auth(value: &str) -> Option<(String, String)> {
    use base64::Engine;
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<WebConfig, String> {
        WebConfig::parse(s, Path::new("/etc/prom")).map_err(|e| match e {
            ParseError::Yaml(m) | ParseError::Invalid(m) => m,
        })
    }

    #[test]
    fn empty_file_is_plain_http_without_auth() {
        let c = parse("").unwrap();
        assert!(c.tls.is_none() && c.users.is_empty() && c.http2);
        let c = parse("# nothing\n").unwrap();
        assert!(c.tls.is_none());
    }

    #[test]
    fn full_file() {
        let c = parse(
            "tls_server_config:\n  cert_file: a.crt\n  key_file: /abs/a.key\n  min_version: TLS13\nhttp_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\nbasic_auth_users:\n  alice: $2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi\n",
        )
        .unwrap();
        let t = c.tls.unwrap();
        assert_eq!(t.cert_file, Path::new("/etc/prom/a.crt"));
        assert_eq!(t.key_file, Path::new("/abs/a.key"));
        assert!(t.tls13 && !t.tls12);
        assert!(!c.http2);
        assert_eq!(c.headers, vec![("X-Frame-Options".into(), "deny".into())]);
        assert!(c.users.contains_key("alice"));
    }

    #[test]
    fn rejections() {
        for (text, want) in [
            ("tls_server_config:\n  cert_fil: x\n", "unknown field"),
            ("basic_auth_user:\n  a: b\n", "unknown field"),
            ("tls_server_config:\n  key_file: k\n", "missing cert_file"),
            ("tls_server_config:\n  cert_file: c\n", "missing key_file"),
            (
                "tls_server_config:\n  cert_file: c\n  key_file: k\n  client_ca_file: ca\n",
                "without a Client Auth Policy",
            ),
            (
                "tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: Foo\n",
                "Invalid ClientAuth",
            ),
            ("basic_auth_users:\n  a: plain\n", "not a bcrypt hash"),
            (
                "http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
                "invalid value",
            ),
            (
                "http_server_config:\n  headers:\n    Server: x\n",
                "can not be configured",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn unknown_key_error_names_the_line() {
        let e = parse("basic_auth_users: {}\nhttp_server_config:\n  http3: true\n").unwrap_err();
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn basic_auth_is_cached() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let a = Authenticator::new([("alice".to_string(), hash)].into_iter().collect());
        assert!(a.enabled());
        assert!(!a.is_cached("alice", "secret"));
        assert!(a.check("alice", "secret"));
        assert!(a.is_cached("alice", "secret"));
        assert!(a.check("alice", "secret"));
        assert!(!a.check("alice", "wrong"));
        assert!(!a.check("bob", "secret"));
        for i in 0..(AUTH_CACHE_SIZE * 2) {
            assert!(!a.check("alice", &i.to_string()));
        }
        assert!(a.cache.lock().unwrap().len() <= AUTH_CACHE_SIZE);
    }

    #[test]
    fn basic_auth_header() {
        assert_eq!(
            parse_basic_auth("Basic YWxpY2U6czpl"),
            Some(("alice".into(), "s:e".into()))
        );
        assert_eq!(parse_basic_auth("Bearer x"), None);
        assert_eq!(parse_basic_auth("Basic !!"), None);
    }
}
