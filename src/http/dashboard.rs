//! The dashboard at `/`: one self-contained page (inline CSS and JS, nothing fetched from
//! elsewhere) that polls `/api/v1/tiers` and draws each tier's sync, health, drift and
//! history. Data enters the page only through `textContent`, never as HTML.

use axum::http::header;
use axum::response::IntoResponse;

const PAGE: &str = include_str!("dashboard.html");

/// What the page may do: its own inline style and script, and requests to this server only.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
                   connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'";

pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        PAGE,
    )
}

#[cfg(test)]
mod tests {
    use super::PAGE;

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for needle in ["http://", "https://", "//cdn", "<link", "src=", "@import"] {
            assert!(!PAGE.contains(needle), "the page contains {needle:?}");
        }
    }

    #[test]
    fn the_page_never_writes_data_as_html() {
        for needle in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
        ] {
            assert!(!PAGE.contains(needle), "the page uses {needle}");
        }
    }
}
