//! The HTTP side of delivery: one client per `alertmanagers` entry, built from its
//! `common/config.HTTPClientConfig` keys (TLS through rustls, proxy, redirects), and one `POST`
//! per batch and Alertmanager (`sendOne` of Prometheus 2.42: `Content-Type: application/json`,
//! any 2xx is success, the body is read and discarded).
//!
//! Credentials files (`password_file`, `credentials_file`, `bearer_token_file`) are read at each
//! send, as Prometheus' round-trippers do, so rotated credentials are picked up.

use crate::config::HttpClientConfig;

/// The client is built as a scrape pool's is ([`client_builder`]): same TLS (rustls, CA file as the
/// only roots, `server_name`, client certificate), proxy and redirect handling, same errors.
pub use crate::server::scrape::client::{client_builder, ClientError, USER_AGENT};

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
        let b = client_builder(http, USER_AGENT)?;
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
