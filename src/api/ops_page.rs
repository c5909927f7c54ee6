//! The ops page at `/`: live calls, recent call records, and a selected call's turns as a
//! latency waterfall. Plain HTML, CSS and JavaScript compiled into the binary (no build
//! step, nothing fetched from elsewhere); the page reads the `/v1` API with a key the user
//! pastes (kept in the browser's localStorage) or passes in the URL fragment
//! (`/#key=pk_…&call=<id>`), which browsers never send to the server. Serving the page needs
//! no key: it holds no data.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::ApiState;

const INDEX_HTML: &str = include_str!("ops_page/index.html");
const OPS_JS: &str = include_str!("ops_page/ops.js");
const OPS_CSS: &str = include_str!("ops_page/ops.css");

/// Same-origin everything: no inline script or style, no other host, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
     img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/", get(index))
        .route("/ops.js", get(script))
        .route("/ops.css", get(style))
}

/// Headers every asset of the page gets. `no-cache`: browsers revalidate, so a new build's
/// page is picked up at once.
fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        body,
    )
}

async fn index() -> impl IntoResponse {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn script() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", OPS_JS)
}

async fn style() -> impl IntoResponse {
    asset("text/css; charset=utf-8", OPS_CSS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_links_only_its_own_assets() {
        assert!(INDEX_HTML.contains(r#"src="/ops.js""#));
        assert!(INDEX_HTML.contains(r#"href="/ops.css""#));
        // Nothing from another host (the page must work offline) and no inline script.
        for page in [INDEX_HTML, OPS_JS, OPS_CSS] {
            assert!(!page.contains("http://") && !page.contains("https://"));
        }
        assert!(!INDEX_HTML.contains("<script>"));
        // Data goes into the DOM as text, never as markup.
        assert!(!OPS_JS.contains("innerHTML"));
    }
}
