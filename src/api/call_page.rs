//! Browser calls' front end: the `/call?token=…` page, where a visitor calls a business's AI
//! agent, and `/widget.js`, the same call in a floating button a business puts on its own
//! site (`<script src="https://parley.example/widget.js" data-token="…" defer>`, or
//! `data-token-url` for a token from the business's backend). Plain HTML, CSS and JavaScript
//! compiled into the binary, like the ops page: nothing fetched from elsewhere, no inline
//! script or style.
//!
//! The page and the widget are one script (`call_page/call.js`, served at `/call/call.js`
//! and at `/widget.js`): the page loads it with `data-mode="page"`, so the call logic (WHIP
//! against `POST /v1/webrtc/whip`, the microphone, mute, hang-up, the level meter) exists
//! once. The page reads its token from its own address in the browser; the server never
//! puts it into the markup, and `Referrer-Policy: no-referrer` keeps it out of other sites'
//! logs. Serving the page needs no token: it holds no data.

use std::sync::LazyLock;

use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

use super::ApiState;

const PAGE_HTML: &str = include_str!("call_page/index.html");
const CALL_JS: &str = include_str!("call_page/call.js");
const CALL_CSS: &str = include_str!("call_page/call.css");

/// The page's policy: same-origin everything (its script, its style, the WHIP requests), no
/// inline script or style, no other host, no framing (a framed call page could be used to
/// trick a visitor into granting the microphone). `img-src data:` is the empty favicon.
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The microphone for the page itself, nothing else.
const PAGE_PERMISSIONS: &str = "microphone=(self), camera=(), geolocation=()";

/// How long browsers keep `/widget.js` before they revalidate it: it is loaded by every page
/// view of the businesses' sites, and a new build reaches them within this.
const WIDGET_CACHE: &str = "public, max-age=300";

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/call", get(page))
        .route("/call/call.js", get(script))
        .route("/call/call.css", get(style))
        .route("/widget.js", get(widget))
}

/// An embedded file and its entity tag (a hash of its bytes, so a rebuild with the same file
/// keeps it).
struct Asset {
    body: &'static str,
    etag: LazyLock<String>,
}

macro_rules! asset {
    ($body:expr) => {
        Asset {
            body: $body,
            etag: LazyLock::new(|| {
                let digest = Sha256::digest($body.as_bytes());
                format!("\"{}\"", hex::encode(&digest[..12]))
            }),
        }
    };
}

static PAGE: Asset = asset!(PAGE_HTML);
static SCRIPT: Asset = asset!(CALL_JS);
static STYLE: Asset = asset!(CALL_CSS);

/// `asset` with `headers`, or 304 when the browser's copy is current.
fn serve(
    request: &HeaderMap,
    asset: &'static Asset,
    content_type: &'static str,
    headers: &[(HeaderName, &'static str)],
) -> Response {
    let etag = asset.etag.as_str();
    let current = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.trim_start_matches("W/") == etag
        });
    let mut response = if current {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type)], asset.body).into_response()
    };
    let out = response.headers_mut();
    out.insert(header::ETAG, etag.parse().expect("a hex entity tag"));
    out.insert(header::X_CONTENT_TYPE_OPTIONS, "nosniff".parse().unwrap());
    for (name, value) in headers {
        out.insert(name.clone(), value.parse().expect("a static header value"));
    }
    response
}

/// Headers of the page and of its own assets. `no-cache`: browsers revalidate (cheaply, by
/// entity tag), so a new build's page is picked up at once.
fn page_headers() -> [(HeaderName, &'static str); 5] {
    [
        (header::CACHE_CONTROL, "no-cache"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CONTENT_SECURITY_POLICY, PAGE_CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            HeaderName::from_static("permissions-policy"),
            PAGE_PERMISSIONS,
        ),
    ]
}

async fn page(request: HeaderMap) -> Response {
    serve(&request, &PAGE, "text/html; charset=utf-8", &page_headers())
}

async fn script(request: HeaderMap) -> Response {
    serve(
        &request,
        &SCRIPT,
        "text/javascript; charset=utf-8",
        &page_headers(),
    )
}

/// The stylesheet of the page and of the widget's panel, which links it from the business's
/// site: any site may load it (`Cross-Origin-Resource-Policy`, CORS for pages that ask).
async fn style(request: HeaderMap) -> Response {
    serve(
        &request,
        &STYLE,
        "text/css; charset=utf-8",
        &[
            (header::CACHE_CONTROL, WIDGET_CACHE),
            (header::REFERRER_POLICY, "no-referrer"),
            (
                HeaderName::from_static("cross-origin-resource-policy"),
                "cross-origin",
            ),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
    )
}

/// The widget: the page's script, for other sites' pages (`<script src>` from any origin,
/// also with `crossorigin` or subresource integrity, hence CORS as well as CORP).
async fn widget(request: HeaderMap) -> Response {
    serve(
        &request,
        &SCRIPT,
        "text/javascript; charset=utf-8",
        &[
            (header::CACHE_CONTROL, WIDGET_CACHE),
            (header::REFERRER_POLICY, "no-referrer"),
            (
                HeaderName::from_static("cross-origin-resource-policy"),
                "cross-origin",
            ),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` without its comments (`//` lines and `/* … */` blocks), for checks that must
    /// not be satisfied or tripped by prose.
    fn code_only(text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("/*") {
            out.push_str(&rest[..start]);
            rest = rest[start..]
                .find("*/")
                .map_or("", |end| &rest[start + end + 2..]);
        }
        out.push_str(rest);
        out.lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_page_links_only_its_own_assets() {
        assert!(PAGE_HTML.contains(r#"src="/call/call.js" data-mode="page""#));
        assert!(PAGE_HTML.contains(r#"href="/call/call.css""#));
        for file in [PAGE_HTML, CALL_JS, CALL_CSS] {
            let code = code_only(file);
            assert!(!code.contains("http://") && !code.contains("https://"));
            assert!(!code.contains("url("), "no CSS fetches");
        }
        assert!(!PAGE_HTML.contains("<script>") && !PAGE_HTML.contains("style="));
        // Text from the server goes into the DOM as text, never as markup.
        assert!(!CALL_JS.contains("innerHTML") && !CALL_JS.contains("insertAdjacentHTML"));
        // The token is never templated into the page.
        assert!(!PAGE_HTML.contains("token="));
    }

    #[test]
    fn whip_goes_to_the_scripts_own_origin() {
        assert!(CALL_JS.contains("new URL('/v1/webrtc/whip', BASE)"));
        assert!(CALL_JS.contains("document.currentScript"));
    }

    #[test]
    fn entity_tags_differ_per_file_and_answer_304() {
        assert_ne!(*SCRIPT.etag, *STYLE.etag);
        let mut request = HeaderMap::new();
        request.insert(header::IF_NONE_MATCH, SCRIPT.etag.parse().unwrap());
        let response = serve(&request, &SCRIPT, "text/javascript", &[]);
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        let response = serve(&HeaderMap::new(), &SCRIPT, "text/javascript", &[]);
        assert_eq!(response.status(), StatusCode::OK);
    }
}
