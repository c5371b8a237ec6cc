//! The HTTP side of delivery: one client per `alertmanagers` entry, built from its
//! `common/config.HTTPClientConfig` keys (TLS through rustls, proxy, redirects), and one `POST`
//! per batch and Alertmanager (`sendOne` of Prometheus 2.42: `Content-Type: application/json`,
//! any 2xx is success, the body is read and discarded).
//!
//! Credentials files (`password_file`, `credentials_file`, `bearer_token_file`) are read at each
//! send, as Prometheus' round-trippers do, so rotated credentials are picked up.

use crate::config::HttpClientConfig;

/// Our `User-Agent` (Prometheus sends `Prometheus/<version>`).
pub const USER_AGENT: &str = concat!("tsdbctl/", env!("CARGO_PKG_VERSION"));

/// Why an `alertmanagers` entry's client could not be built.
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

/// Why one send failed; the text is what the log line and the error counter are about.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("Post {url:?}: context deadline exceeded")]
    Timeout { url: String },
    #[error("Post {url:?}: {message}")]
    Request { url: String, message: String },
    #[error("bad response status {0}")]
    Status(String),
    #[error("reading {path}: {error}")]
    Credentials { path: String, error: std::io::Error },
}

/// The client of one `alertmanagers` entry; connections are reused across sends.
#[derive(Clone)]
pub struct AmClient {
    client: reqwest::Client,
    http: HttpClientConfig,
}

impl AmClient {
    pub fn new(http: &HttpClientConfig) -> Result<AmClient, ClientError> {
        let read = |path: &str| {
            std::fs::read(path).map_err(|error| ClientError::ReadFile {
                path: path.to_string(),
                error,
            })
        };
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(USER_AGENT)
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
        let tls = &http.tls_config;
        if let Some(ca) = &tls.ca_file {
            let pem = read(ca)?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| ClientError::Tls(format!("{ca}: {e}")))?;
            // The CA file's certificates are the only roots, as in Go's tls.Config.RootCAs.
            b = b.tls_built_in_root_certs(false);
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
            let mut pem = read(cert)?;
            pem.push(b'\n');
            pem.extend(read(key)?);
            let id = reqwest::Identity::from_pem(&pem)
                .map_err(|e| ClientError::Tls(format!("cert_file/key_file: {e}")))?;
            b = b.identity(id);
        }
        if tls.insecure_skip_verify {
            b = b.danger_accept_invalid_certs(true);
        }
        if let Some(v) = &tls.min_version {
            match v.as_str() {
                "TLS13" => b = b.min_tls_version(reqwest::tls::Version::TLS_1_3),
                "TLS12" => b = b.min_tls_version(reqwest::tls::Version::TLS_1_2),
                // rustls speaks TLS 1.2 and 1.3 only: a lower minimum changes nothing.
                _ => {}
            }
        }
        if tls.server_name.as_deref().is_some_and(|s| !s.is_empty()) {
            // reqwest verifies the certificate against the URL's host, with no separate name.
            return Err(ClientError::Tls(
                "server_name is not supported for Alertmanagers: the URL's host is verified"
                    .to_string(),
            ));
        }
        let client = b.build().map_err(|e| ClientError::Build(e.to_string()))?;
        Ok(AmClient {
            client,
            http: http.clone(),
        })
    }

    /// Posts `body` (a JSON array of alerts) to `url`, giving up after `timeout`.
    pub async fn post(
        &self,
        url: &str,
        body: bytes::Bytes,
        timeout: std::time::Duration,
    ) -> Result<(), SendError> {
        let req_err = |e: reqwest::Error| {
            let mut message = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                message.push_str(": ");
                message.push_str(&s.to_string());
                src = s.source();
            }
            SendError::Request {
                url: url.to_string(),
                message,
            }
        };
        let mut req = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(auth) = self.authorization()? {
            req = req.header(reqwest::header::AUTHORIZATION, auth);
        }
        let work = async {
            let resp = req.send().await.map_err(req_err)?;
            let status = resp.status();
            // Read to the end so the connection can be reused.
            let _ = resp.bytes().await;
            if !status.is_success() {
                return Err(SendError::Status(format!(
                    "{} {}",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or("")
                )));
            }
            Ok(())
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(SendError::Timeout {
                url: url.to_string(),
            }),
        }
    }

    /// The `Authorization` header value of `basic_auth`, `authorization` or the deprecated
    /// `bearer_token[_file]` (moved into `authorization` when the file was loaded).
    fn authorization(&self) -> Result<Option<String>, SendError> {
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .map(|s| s.trim().to_string())
                .map_err(|error| SendError::Credentials {
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
            use base64::Engine;
            let token = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{password}", ba.username));
            return Ok(Some(format!("Basic {token}")));
        }
        if let Some(a) = &self.http.authorization {
            let cred = match (&a.credentials, &a.credentials_file) {
                (Some(c), _) => c.clone(),
                (None, Some(f)) => read(f)?,
                (None, None) => String::new(),
            };
            let kind = if a.kind.is_empty() { "Bearer" } else { &a.kind };
            return Ok(Some(format!("{kind} {cred}")));
        }
        Ok(
            match (&self.http.bearer_token, &self.http.bearer_token_file) {
                (Some(t), _) => Some(format!("Bearer {t}")),
                (None, Some(f)) => Some(format!("Bearer {}", read(f)?)),
                (None, None) => None,
            },
        )
    }
}
