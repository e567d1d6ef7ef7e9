//! The dashboard under `/ui`: one page, its script and its stylesheet, embedded in the binary.
//!
//! It is part of the test control plane and asks for the same credentials as the API: without
//! them the answer is the usual 401 with `WWW-Authenticate: Basic`, so a browser prompts once and
//! then sends those credentials with every fetch the page makes to the same origin. The page only
//! reads the public JSON surfaces (`/v2/Services…`, `/emulator/v1/…`), polling about once a
//! second; it has no endpoints of its own. Every answer carries a strict Content-Security-Policy
//! (no inline script or style, nothing from another origin) and `Cache-Control: no-store`.

use axum::Router;
use axum::http::{HeaderName, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::state::AppState;
use crate::twilio::auth::Caller;

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const APP_CSS: &str = include_str!("app.css");
const FAVICON_SVG: &str = include_str!("favicon.svg");

/// Only this origin, for everything; no plugins, no `<base>`, no form posts, no framing.
const CSP: &str = "default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(index))
        .route("/ui/", get(index))
        .route("/ui/app.js", get(app_js))
        .route("/ui/app.css", get(app_css))
        .route("/ui/favicon.svg", get(favicon))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    const HEADERS: [(HeaderName, &str); 5] = [
        (header::CACHE_CONTROL, "no-store"),
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    ([(header::CONTENT_TYPE, content_type)], HEADERS, body).into_response()
}

async fn index(_caller: Caller) -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js(_caller: Caller) -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn app_css(_caller: Caller) -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

async fn favicon(_caller: Caller) -> Response {
    asset("image/svg+xml", FAVICON_SVG)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CSP forbids inline code: the page must not need any, and the script must never
    /// parse data as HTML.
    #[test]
    fn assets_need_no_inline_code_and_never_parse_html() {
        let html = INDEX_HTML.to_ascii_lowercase();
        assert!(!html.contains("<style"), "inline <style> in index.html");
        assert!(!html.contains(" style="), "style attribute in index.html");
        let handler = html.match_indices(" on").any(|(i, _)| {
            let rest = &html[i + 3..];
            let name_len = rest.bytes().take_while(u8::is_ascii_lowercase).count();
            name_len > 0 && rest[name_len..].starts_with('=')
        });
        assert!(!handler, "inline event handler in index.html");
        for tag in html.split("<script").skip(1) {
            let open = &tag[..tag.find('>').expect("unclosed <script")];
            assert!(open.contains(" src="), "inline <script> in index.html");
        }
        assert!(!html.contains("http://") && !html.contains("https://"));
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "setAttribute('style'",
        ] {
            assert!(!APP_JS.contains(banned), "app.js uses {banned}");
        }
        assert!(!APP_CSS.contains("@import") && !APP_CSS.contains("url("));
    }
}
