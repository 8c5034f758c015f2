//! Serving the web UI: `static/` with an SPA fallback, the bundle's caching rules, and
//! `index.html` rendered with the content-hashed bundle names.
//!
//! The web build (scripts/build-web.sh) writes `static/pkg/manifest.json` naming the
//! hashed files (`script`, `wasm`, `style`). The server fills the two markers of
//! `static/index.html` from it once, at start.
//!
//! Caching invariants: files under `/pkg/` whose name carries a content hash are
//! `immutable` for a year; `index.html` (and every SPA route) is `no-store`; other static
//! files are revalidated (`no-cache`). The build precompresses the bundle (brotli and
//! gzip at their highest settings); a precompressed answer says `Vary: Accept-Encoding`.

use std::path::Path;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_ENCODING, VARY};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

const HEAD_MARKER: &str = "<!--MERIDIAN_HEAD-->";
const BOOT_MARKER: &str = "<!--MERIDIAN_BOOT-->";

/// The bundle's file names, as written by the web build.
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub script: String,
    pub wasm: String,
    pub style: String,
}

/// The rendered `index.html`.
#[derive(Debug, Clone)]
pub struct WebAssets {
    pub index_html: String,
    /// False when the bundle has not been built (the page then says how to build it).
    pub bundle_built: bool,
}

impl WebAssets {
    pub fn load(static_dir: &Path) -> WebAssets {
        let template = std::fs::read_to_string(static_dir.join("index.html")).ok();
        let manifest = std::fs::read_to_string(static_dir.join("pkg/manifest.json"))
            .ok()
            .and_then(|text| serde_json::from_str::<Manifest>(&text).ok());
        match (template, manifest) {
            (Some(template), Some(manifest)) => WebAssets {
                index_html: render_index(&template, &manifest),
                bundle_built: true,
            },
            (template, _) => {
                tracing::warn!(
                    dir = %static_dir.display(),
                    "the web UI is not built; run scripts/run.sh (or scripts/build-web.sh)"
                );
                WebAssets {
                    index_html: not_built_page(template.is_some()),
                    bundle_built: false,
                }
            }
        }
    }
}

pub fn render_index(template: &str, manifest: &Manifest) -> String {
    let head = format!(
        r#"<link rel="stylesheet" href="/pkg/{style}">
    <link rel="modulepreload" href="/pkg/{script}">
    <link rel="preload" href="/pkg/{wasm}" as="fetch" type="application/wasm" crossorigin>"#,
        style = manifest.style,
        script = manifest.script,
        wasm = manifest.wasm,
    );
    let boot = format!(
        r#"<script type="module">
      import init from "/pkg/{script}";
      init({{ module_or_path: "/pkg/{wasm}" }});
    </script>"#,
        script = manifest.script,
        wasm = manifest.wasm,
    );
    template
        .replace(HEAD_MARKER, &head)
        .replace(BOOT_MARKER, &boot)
}

fn not_built_page(has_template: bool) -> String {
    let what = if has_template {
        "The web UI bundle has not been built"
    } else {
        "The web UI files were not found"
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Meridian</title></head>\
         <body><h1>Meridian</h1><p>{what}. Run <code>scripts/run.sh</code> from the repository, \
         which builds it and starts the server. The API is available under <code>/api</code>.</p></body></html>"
    )
}

/// `index.html`: for `/` and every route of the single-page app.
pub async fn index(State(web): State<Arc<WebAssets>>) -> Response {
    let mut response = Html(web.index_html.clone()).into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// What `static/` does not have: a 404 for a path that names a file, the app otherwise.
pub async fn spa_fallback(web: State<Arc<WebAssets>>, request: Request) -> Response {
    let path = request.uri().path();
    let last = path.rsplit('/').next().unwrap_or("");
    if last.contains('.') || path.starts_with("/pkg/") {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    index(web).await
}

fn varies_with_accept_encoding(headers: &HeaderMap) -> bool {
    headers.get_all(VARY).iter().any(|value| {
        value
            .to_str()
            .is_ok_and(|v| v.to_ascii_lowercase().contains("accept-encoding"))
    })
}

/// Whether a bundle file name carries a content hash: `name-<16+ hex>.ext`.
pub fn is_hashed_name(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or("");
    stem.rsplit_once('-')
        .is_some_and(|(_, hash)| hash.len() >= 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Sets `Cache-Control` on static files (responses that do not set their own).
pub async fn cache_control_middleware(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let mut response = next.run(request).await;
    if path.starts_with("/api/") || response.headers().contains_key(CACHE_CONTROL) {
        return response;
    }
    if !response.status().is_success() && response.status() != StatusCode::NOT_MODIFIED {
        return response;
    }
    let name = path.rsplit('/').next().unwrap_or("");
    let value = if path.starts_with("/pkg/") && is_hashed_name(name) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(value));
    // A precompressed file varies with Accept-Encoding, so caches keep each encoding
    // apart (the compression layer says so itself only for what it compresses).
    if headers.contains_key(CONTENT_ENCODING) && !varies_with_accept_encoding(headers) {
        headers.append(VARY, HeaderValue::from_static("accept-encoding"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_content_hashed_names() {
        assert!(is_hashed_name("meridian_web-0123456789abcdef.js"));
        assert!(is_hashed_name("meridian_web_bg-0123456789abcdef.wasm"));
        assert!(!is_hashed_name("meridian_web.js"));
        assert!(!is_hashed_name("manifest.json"));
        assert!(!is_hashed_name("style-abc.css"));
    }

    #[test]
    fn index_gets_the_hashed_bundle() {
        let manifest = Manifest {
            script: "meridian_web-0123456789abcdef.js".into(),
            wasm: "meridian_web_bg-0123456789abcdef.wasm".into(),
            style: "style-0123456789abcdef.css".into(),
        };
        let html = render_index(
            "<head><!--MERIDIAN_HEAD--></head><body><!--MERIDIAN_BOOT--></body>",
            &manifest,
        );
        assert!(html.contains(r#"href="/pkg/style-0123456789abcdef.css""#));
        assert!(html.contains(r#"import init from "/pkg/meridian_web-0123456789abcdef.js""#));
        assert!(html.contains(r#"module_or_path: "/pkg/meridian_web_bg-0123456789abcdef.wasm""#));
        assert!(!html.contains("MERIDIAN_"));
    }
}
