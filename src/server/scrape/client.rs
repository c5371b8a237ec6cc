//! The HTTP side of a scrape (`targetScraper.scrape` of Prometheus 2.42 and the
//! `common/config.HTTPClientConfig` it is built from): request headers exactly as Prometheus sends
//! them, authentication, TLS through rustls, gzip, the body size limit.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::config::{HttpClientConfig, TlsConfig};

/// The `Accept` header of a Prometheus 2.42 scrape (without the protobuf feature): OpenMetrics
/// first, then text 0.0.4.
pub const ACCEPT_HEADER: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
/// Our `User-Agent`, shaped as Prometheus' (`Prometheus/<version>`).
pub const USER_AGENT: &str = concat!("tsdbctl/", env!("CARGO_PKG_VERSION"));
/// The header telling the target how long the scrape may take, in seconds.
pub const TIMEOUT_HEADER: &str = "X-Prometheus-Scrape-Timeout-Seconds";

/// Why a scrape (the HTTP part) failed. The text is what `/api/v1/targets` shows as `lastError`,
/// worded as Prometheus words it.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("server returned HTTP status {0}")]
    Status(String),
    #[error("body size limit exceeded")]
    BodySizeLimit,
    #[error("Get {url:?}: context deadline exceeded")]
    Timeout { url: String },
    #[error("Get {url:?}: {message}")]
    Request { url: String, message: String },
    #[error("reading {path}: {error}")]
    Credentials { path: String, error: std::io::Error },
}

/// Why a pool's HTTP client could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("tls_config: reading {path}: {error}")]
    ReadFile { path: String, error: std::io::Error },
    #[error("tls_config: {0}")]
    Tls(String),
    #[error("proxy_url {url:?}: {message}")]
    Proxy { url: String, message: String },
    #[error("building the HTTP client: {0}")]
    Build(String),
}

/// The pool's client: connections are reused between scrapes of its targets.
#[derive(Clone)]
pub struct ScrapeClient {
    client: reqwest::Client,
    http: HttpClientConfig,
}

/// A scraped body and its `Content-Type`.
pub struct Fetched {
    pub content_type: String,
    pub body: Vec<u8>,
}

impl ScrapeClient {
    pub fn new(http: &HttpClientConfig) -> Result<ScrapeClient, ClientError> {
        let b = client_builder(http, USER_AGENT)?.gzip(true);
        let client = b.build().map_err(|e| ClientError::Build(e.to_string()))?;
        Ok(ScrapeClient {
            client,
            http: http.clone(),
        })
    }

    /// One scrape of `url`: at most `body_limit` bytes of uncompressed body (0: no limit); a
    /// body of exactly the limit fails, as in Prometheus (`n >= limit`).
    pub async fn fetch(
        &self,
        url: &str,
        timeout: std::time::Duration,
        body_limit: u64,
        buf: Vec<u8>,
    ) -> Result<Fetched, FetchError> {
        let req_err = |e: reqwest::Error| {
            if e.is_timeout() {
                return FetchError::Timeout {
                    url: url.to_string(),
                };
            }
            let mut message = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                message.push_str(": ");
                message.push_str(&s.to_string());
                src = s.source();
            }
            FetchError::Request {
                url: url.to_string(),
                message,
            }
        };
        let mut req = self
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, ACCEPT_HEADER)
            .header(reqwest::header::ACCEPT_ENCODING, "gzip")
            .header(TIMEOUT_HEADER, format_seconds(timeout));
        req = self.authorize(req)?;
        let work = async {
            let mut resp = req.send().await.map_err(req_err)?;
            if resp.status() != reqwest::StatusCode::OK {
                let s = resp.status();
                return Err(FetchError::Status(format!(
                    "{} {}",
                    s.as_u16(),
                    s.canonical_reason().unwrap_or("")
                )));
            }
            let content_type = resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let limit = if body_limit == 0 {
                u64::MAX
            } else {
                body_limit
            };
            let mut body = buf;
            body.clear();
            while let Some(chunk) = resp.chunk().await.map_err(req_err)? {
                let room = limit.saturating_sub(body.len() as u64);
                if chunk.len() as u64 >= room {
                    return Err(FetchError::BodySizeLimit);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Fetched { content_type, body })
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout {
                url: url.to_string(),
            }),
        }
    }

    /// `basic_auth`, `authorization` or `bearer_token[_file]`; files are read at each scrape so
    /// that rotated credentials are picked up, as Prometheus does.
    fn authorize(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, FetchError> {
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .map(|s| s.trim().to_string())
                .map_err(|error| FetchError::Credentials {
                    path: path.to_string(),
                    error,
                })
        };
        if let Some(ba) = &self.http.basic_auth {
            let password = match (&ba.password, &ba.password_file) {
                (Some(p), _) => p.clone(),
                (None, Some(f)) => read(f)?,
                (None, None) => String::new(),
            };
            return Ok(req.basic_auth(&ba.username, Some(password)));
        }
        if let Some(a) = &self.http.authorization {
            let cred = match (&a.credentials, &a.credentials_file) {
                (Some(c), _) => c.clone(),
                (None, Some(f)) => read(f)?,
                (None, None) => String::new(),
            };
            let kind = if a.kind.is_empty() { "Bearer" } else { &a.kind };
            return Ok(req.header(reqwest::header::AUTHORIZATION, format!("{kind} {cred}")));
        }
        let token = match (&self.http.bearer_token, &self.http.bearer_token_file) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(f)) => Some(read(f)?),
            (None, None) => None,
        };
        Ok(match token {
            Some(t) => req.header(reqwest::header::AUTHORIZATION, format!("Bearer {t}")),
            None => req,
        })
    }
}

/// A client builder for an `HttpClientConfig`, as Prometheus' `common/config` builds one: the
/// user agent, redirects as configured, the proxy (or none: the environment's proxy variables are
/// ignored unless configured), and `tls_config` through rustls. Scrapes and Alertmanager delivery
/// build their clients from it; each adds what its requests need.
pub fn client_builder(
    http: &HttpClientConfig,
    user_agent: &str,
) -> Result<reqwest::ClientBuilder, ClientError> {
    let mut b = reqwest::Client::builder()
        .user_agent(user_agent)
        .tcp_nodelay(true)
        .redirect(if http.follow_redirects {
            reqwest::redirect::Policy::limited(10)
        } else {
            reqwest::redirect::Policy::none()
        });
    match &http.proxy_url {
        Some(url) => {
            let p = reqwest::Proxy::all(url).map_err(|e| ClientError::Proxy {
                url: url.clone(),
                message: e.to_string(),
            })?;
            b = b.proxy(p);
        }
        // Prometheus ignores the environment's proxy variables unless told.
        None => b = b.no_proxy(),
    }
    if http.tls_config != TlsConfig::default() {
        b = b.use_preconfigured_tls(rustls_config(&http.tls_config)?);
    }
    Ok(b)
}

/// Go's `strconv.FormatFloat(seconds, 'f', -1, 64)`: the shortest decimal, no exponent.
pub fn format_seconds(d: std::time::Duration) -> String {
    let s = d.as_secs_f64();
    let mut out = format!("{s}");
    if out.ends_with(".0") {
        out.truncate(out.len() - 2);
    }
    out
}

fn read_file(path: &str) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|error| ClientError::ReadFile {
        path: path.to_string(),
        error,
    })
}

fn pem_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let data = read_file(path)?;
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut data.as_slice()).collect();
    let certs = certs.map_err(|e| ClientError::Tls(format!("{path}: {e}")))?;
    if certs.is_empty() {
        return Err(ClientError::Tls(format!("{path}: no certificate found")));
    }
    Ok(certs)
}

/// A rustls client configuration for `tls_config`: the CA file's certificates as the only roots
/// (else the Mozilla roots), a client certificate, `server_name` as the name the server's
/// certificate must carry, or no verification at all with `insecure_skip_verify`.
fn rustls_config(tls: &TlsConfig) -> Result<rustls::ClientConfig, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_file {
        Some(ca) => {
            for c in pem_certs(ca)? {
                roots
                    .add(c)
                    .map_err(|e| ClientError::Tls(format!("{ca}: {e}")))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::clone(&provider),
    )
    .build()
    .map_err(|e| ClientError::Tls(e.to_string()))?;
    let server_name = match &tls.server_name {
        Some(n) if !n.is_empty() => Some(
            ServerName::try_from(n.clone())
                .map_err(|e| ClientError::Tls(format!("server_name {n:?}: {e}")))?,
        ),
        _ => None,
    };
    let verifier = Arc::new(Verifier {
        inner: webpki,
        server_name,
        insecure: tls.insecure_skip_verify,
    });
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut cfg = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let certs = pem_certs(cert)?;
            let data = read_file(key)?;
            let key = rustls_pemfile::private_key(&mut data.as_slice())
                .map_err(|e| ClientError::Tls(format!("{key}: {e}")))?
                .ok_or_else(|| ClientError::Tls(format!("{key}: no private key found")))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| ClientError::Tls(e.to_string()))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(ClientError::Tls(
                "cert_file and key_file must be given together".to_string(),
            ))
        }
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Certificate verification with Prometheus' options: the certificate is checked against
/// `server_name` when set (instead of the URL's host), or not at all when insecure.
#[derive(Debug)]
struct Verifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    server_name: Option<ServerName<'static>>,
    insecure: bool,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.insecure {
            return Ok(ServerCertVerified::assertion());
        }
        let name = self.server_name.as_ref().unwrap_or(server_name);
        self.inner
            .verify_server_cert(end_entity, intermediates, name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_header_is_go_float() {
        assert_eq!(format_seconds(std::time::Duration::from_secs(10)), "10");
        assert_eq!(
            format_seconds(std::time::Duration::from_millis(1500)),
            "1.5"
        );
        assert_eq!(
            format_seconds(std::time::Duration::from_millis(250)),
            "0.25"
        );
    }
}
