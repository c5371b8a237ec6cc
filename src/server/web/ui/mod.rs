//! The web UI of `tsdbctl serve`: the pages of Prometheus 2.42's UI (`web/ui/react-app`'s routes
//! `/graph`, `/targets`, `/alerts`, `/rules`, `/status`, `/config`, `/flags`, `/tsdb-status`, and
//! `/` redirecting to `/graph`), with the expression browser's URL parameters (`g0.expr`,
//! `g0.tab`, `g0.range_input`, `g0.end_input`, `g0.step_input`, `g0.stacked`) so that links made
//! for Prometheus, Grafana's included, open the same view.
//!
//! Exists so that a user sees the data as tables and graphs with nothing but the binary: the
//! hand-written pages and scripts in `assets/` and the vendored uPlot (`assets/VENDORED.md`) are
//! compiled in with `include_bytes!` (no files to install, no CDN, no Node toolchain), gzipped
//! once at first use and served from memory with `ETag`s. The pages only read the HTTP API
//! ([`super::api`]) from the browser: this module holds no query, storage or scrape logic, and
//! its responses carry a Content-Security-Policy that allows no inline script, so that the only
//! scripts that run are the ones below. The scripts put every label value, annotation and error
//! into the page as text (`textContent`), never as markup.

use axum::extract::{Path, RawQuery};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use std::io::Write;
use std::sync::OnceLock;

/// The pages, all served by the same document: its script renders the page its path names.
pub const PAGES: &[&str] = &[
    "/graph",
    "/targets",
    "/alerts",
    "/rules",
    "/status",
    "/config",
    "/flags",
    "/tsdb-status",
];

/// Where `/` sends the browser, as Prometheus' `homePage`.
pub const HOME: &str = "/graph";

/// Prefix of the static assets' paths.
pub const STATIC_PREFIX: &str = "/static/";

/// On every UI response. Scripts and styles only from this server's files (no inline script, no
/// `eval`: uPlot sets styles through the CSSOM, which `style-src 'self'` allows); data is fetched
/// from the same origin only; `data:` images for the graph's PNG download; no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// `Cache-Control` of an asset requested with its current version (`?v=<etag>`, as the page
/// links it): the content of that URL never changes.
const CACHE_IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of the page and of an asset requested without its version: revalidate (the
/// `ETag` makes that a 304).
const CACHE_REVALIDATE: &str = "no-cache";

/// The page's document; its `/static/<name>` references get `?v=<etag>` appended when served.
const INDEX_HTML: &str = include_str!("assets/index.html");

/// The assets: name under [`STATIC_PREFIX`], content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "ui.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/ui.css"),
    ),
    (
        "ui.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/ui.js"),
    ),
    (
        "graph.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/graph.js"),
    ),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/uPlot.min.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("assets/favicon.svg"),
    ),
];

/// One file as served: its bytes, gzipped bytes and entity tag.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub raw: Bytes,
    pub gzip: Bytes,
    /// Quoted, as sent in `ETag`.
    pub etag: String,
}

impl Asset {
    fn new(name: &'static str, content_type: &'static str, raw: Vec<u8>) -> Asset {
        let etag = format!("\"{:016x}\"", xxhash_rust::xxh64::xxh64(&raw, 0));
        let gzip = gzip_best(&raw);
        Asset {
            name,
            content_type,
            raw: Bytes::from(raw),
            gzip: Bytes::from(gzip),
            etag,
        }
    }

    /// The `v` parameter the page links this asset with.
    pub fn version(&self) -> &str {
        self.etag.trim_matches('"')
    }
}

fn gzip_best(raw: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing to a Vec cannot fail.
    if enc.write_all(raw).is_err() {
        return Vec::new();
    }
    enc.finish().unwrap_or_default()
}

/// The page and the assets, built at first use.
pub struct Ui {
    pub index: Asset,
    pub assets: Vec<Asset>,
}

impl Ui {
    fn build() -> Ui {
        let assets: Vec<Asset> = ASSETS
            .iter()
            .map(|&(name, ct, bytes)| Asset::new(name, ct, bytes.to_vec()))
            .collect();
        let mut html = INDEX_HTML.to_string();
        for a in &assets {
            let plain = format!("\"{STATIC_PREFIX}{}\"", a.name);
            let versioned = format!("\"{STATIC_PREFIX}{}?v={}\"", a.name, a.version());
            html = html.replace(&plain, &versioned);
        }
        Ui {
            index: Asset::new("index.html", "text/html; charset=utf-8", html.into_bytes()),
            assets,
        }
    }

    /// Bytes the browser downloads for a first visit with `Accept-Encoding: gzip`: the page and
    /// every asset, gzipped.
    pub fn gzipped_size(&self) -> usize {
        self.index.gzip.len() + self.assets.iter().map(|a| a.gzip.len()).sum::<usize>()
    }
}

/// The UI, gzipped at the first call (~50 ms once; then served from memory).
pub fn ui() -> &'static Ui {
    static UI: OnceLock<Ui> = OnceLock::new();
    UI.get_or_init(Ui::build)
}

/// The UI's routes; the caller puts them behind the same authentication as the API.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut r = Router::new()
        .route("/", get(home))
        .route("/static/{name}", get(asset));
    for &p in PAGES {
        r = r.route(p, get(page));
    }
    r
}

/// Prometheus answers `/` with 302 to the home page; the query string is kept so that a link to
/// `/?g0.expr=...` opens that view.
async fn home(RawQuery(q): RawQuery) -> Response {
    let to = match q {
        Some(q) if !q.is_empty() => format!("{HOME}?{q}"),
        _ => HOME.to_string(),
    };
    let mut r = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(&to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

async fn page(headers: HeaderMap) -> Response {
    respond(&ui().index, &headers, CACHE_REVALIDATE)
}

async fn asset(Path(name): Path<String>, RawQuery(q): RawQuery, headers: HeaderMap) -> Response {
    let Some(a) = ui().assets.iter().find(|a| a.name == name) else {
        return super::text(StatusCode::NOT_FOUND, "404 page not found\n");
    };
    let current = q.as_deref().is_some_and(|q| {
        q.split('&')
            .any(|kv| kv.strip_prefix("v=") == Some(a.version()))
    });
    respond(
        a,
        &headers,
        if current {
            CACHE_IMMUTABLE
        } else {
            CACHE_REVALIDATE
        },
    )
}

/// The asset, gzipped if the client accepts it, or 304 when the client's copy is current.
fn respond(a: &Asset, req: &HeaderMap, cache: &'static str) -> Response {
    let not_modified = req
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == a.etag || t.trim() == "*"));
    let gzip = accepts_gzip(req);
    let mut resp = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else if gzip {
        // Bytes: a reference count, not a copy.
        a.gzip.clone().into_response()
    } else {
        a.raw.clone().into_response()
    };
    let h = resp.headers_mut();
    if gzip && !not_modified {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(a.content_type),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if let Ok(v) = HeaderValue::from_str(&a.etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    resp
}

/// Whether `Accept-Encoding` lists `gzip` (or `*`) with a non-zero quality.
fn accepts_gzip(req: &HeaderMap) -> bool {
    req.get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or("");
            let zero_q = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f64>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !zero_q
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn gzip_round_trips_every_asset() {
        for a in ui().assets.iter().chain([&ui().index]) {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&a.gzip[..])
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, a.raw, "{}", a.name);
            assert!(a.gzip.len() < a.raw.len(), "{}", a.name);
        }
    }

    #[test]
    fn page_links_every_asset_with_its_version() {
        let html = std::str::from_utf8(&ui().index.raw).unwrap();
        for a in &ui().assets {
            let link = format!("{STATIC_PREFIX}{}?v={}\"", a.name, a.version());
            assert!(html.contains(&link), "{} not linked as {link}", a.name);
        }
        // No inline script: every <script> has a src.
        for tag in html.split("<script").skip(1) {
            let open = tag.split('>').next().unwrap();
            assert!(open.contains(" src="), "inline script: <script{open}>");
        }
        assert!(!html.contains(" on"), "inline event handler in the page");
    }

    #[test]
    fn accept_encoding_parsing() {
        let ae = header::ACCEPT_ENCODING;
        assert!(accepts_gzip(&headers(&[(ae.clone(), "gzip, deflate, br")])));
        assert!(accepts_gzip(&headers(&[(
            ae.clone(),
            "br;q=1.0, GZIP;q=0.5"
        )])));
        assert!(accepts_gzip(&headers(&[(ae.clone(), "*")])));
        assert!(!accepts_gzip(&headers(&[(ae.clone(), "gzip;q=0")])));
        assert!(!accepts_gzip(&headers(&[(ae.clone(), "br, identity")])));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn conditional_requests_get_304() {
        let a = &ui().assets[0];
        let r = respond(
            a,
            &headers(&[(header::IF_NONE_MATCH, &a.etag)]),
            CACHE_IMMUTABLE,
        );
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(r.headers()[header::ETAG], a.etag.as_str());
        let r = respond(
            a,
            &headers(&[(header::IF_NONE_MATCH, "\"other\"")]),
            CACHE_IMMUTABLE,
        );
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers().get(header::CONTENT_ENCODING).is_none());
    }

    #[test]
    fn csp_forbids_inline_script() {
        let script_src = CONTENT_SECURITY_POLICY
            .split(';')
            .map(str::trim)
            .find(|d| d.starts_with("script-src"))
            .unwrap();
        assert_eq!(script_src, "script-src 'self'");
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
    }
}
