//! The customers' web app, served by the same process as the API (`serve` and `api`): a few
//! HTML pages and the CSS and JavaScript they load, all embedded in the binary at build time
//! (`crates/server/web/`), so nothing else runs or is deployed beside it.
//!
//! The pages are static shells; their scripts read and change everything through the `/v1` API
//! with the session cookie (`api::session`), so the app can do nothing the API would not let
//! the same key do. The one page the server decides about is an image's: it answers `404` for
//! an image the signed-in customer may not see, as the API does.
//!
//! Every answer of the process carries the same strict headers ([`security_headers`]): a
//! Content-Security-Policy that allows only this origin's own scripts and styles (no inline
//! script, no `eval`), no framing, no referrer sent elsewhere, no content sniffing.

use std::{collections::HashMap, sync::LazyLock};

use axum::{
    Router,
    extract::{FromRequestParts, Path, Request, State},
    http::{HeaderValue, StatusCode, header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
    routing::get,
};
use imagelake_runtime::AppState;
use sha2::{Digest, Sha256};

use crate::auth::{Caller, session_token};

/// One embedded file.
struct Asset {
    body: &'static [u8],
    content_type: &'static str,
    etag: String,
}

macro_rules! embed {
    ($($name:literal => $type:literal),* $(,)?) => {
        [$(($name, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/", $name)).as_slice(), $type)),*]
    };
}

/// The pages and assets, by their path under `web/`.
static ASSETS: LazyLock<HashMap<&'static str, Asset>> = LazyLock::new(|| {
    embed![
        "index.html" => "text/html; charset=utf-8",
        "signin.html" => "text/html; charset=utf-8",
        "image.html" => "text/html; charset=utf-8",
        "not-found.html" => "text/html; charset=utf-8",
        "console.html" => "text/html; charset=utf-8",
        "dashboards.html" => "text/html; charset=utf-8",
        "query.html" => "text/html; charset=utf-8",
        "app.css" => "text/css; charset=utf-8",
        "js/api.js" => "text/javascript; charset=utf-8",
        "js/app.js" => "text/javascript; charset=utf-8",
        "js/gallery.js" => "text/javascript; charset=utf-8",
        "js/image.js" => "text/javascript; charset=utf-8",
        "js/signin.js" => "text/javascript; charset=utf-8",
        "js/upload.js" => "text/javascript; charset=utf-8",
        "js/console/main.js" => "text/javascript; charset=utf-8",
        "js/console/customers.js" => "text/javascript; charset=utf-8",
        "js/console/errors.js" => "text/javascript; charset=utf-8",
        "js/console/health.js" => "text/javascript; charset=utf-8",
        "js/console/jobs.js" => "text/javascript; charset=utf-8",
        "js/console/lake.js" => "text/javascript; charset=utf-8",
        "js/console/processing.js" => "text/javascript; charset=utf-8",
        "js/console/stream.js" => "text/javascript; charset=utf-8",
        "js/dash/chart.js" => "text/javascript; charset=utf-8",
        "js/dash/dashboard.js" => "text/javascript; charset=utf-8",
        "js/dash/query.js" => "text/javascript; charset=utf-8",
        "js/dash/range.js" => "text/javascript; charset=utf-8",
        "js/dash/sql.js" => "text/javascript; charset=utf-8",
        "vendor/uplot.min.js" => "text/javascript; charset=utf-8",
        "vendor/uplot.min.css" => "text/css; charset=utf-8",
        "favicon.svg" => "image/svg+xml",
    ]
    .into_iter()
    .map(|(name, body, content_type)| {
        let etag = format!("\"{}\"", &hex::encode(Sha256::digest(body))[..16]);
        (
            name,
            Asset {
                body,
                content_type,
                etag,
            },
        )
    })
    .collect()
});

/// The pages' routes: the app at `/` and `/images/{id}`, the console at `/console`, files
/// under `/assets/`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/images/{id}", get(image_page))
        .route("/console", get(console))
        .route("/dashboards", get(dashboards))
        .route("/dashboards/{name}", get(dashboards))
        .route("/query", get(query))
        .route("/assets/{*path}", get(asset))
        .route("/favicon.ico", get(|| async { serve("favicon.svg", None) }))
}

/// An embedded file; `If-None-Match` with its tag is answered `304`. Browsers check again
/// before reuse (`no-cache`), so a new binary's files are seen at once.
fn serve(name: &str, if_none_match: Option<&HeaderValue>) -> Response {
    let Some(asset) = ASSETS.get(name) else {
        return page("not-found.html", StatusCode::NOT_FOUND);
    };
    let headers = [
        (header::CONTENT_TYPE, asset.content_type.to_owned()),
        (header::ETAG, asset.etag.clone()),
        (header::CACHE_CONTROL, "no-cache".to_owned()),
    ];
    if if_none_match.is_some_and(|tag| tag.as_bytes() == asset.etag.as_bytes()) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (headers, asset.body).into_response()
}

/// A page: never stored, so after signing out neither the back button nor a shared machine's
/// cache shows what was on it.
fn page(name: &str, status: StatusCode) -> Response {
    let mut response = serve(name, None);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Who the request's session or key is, if anyone; a session cookie that no longer opens a
/// session is cleared, so the browser stops sending it (and spending its address's budget).
async fn signed_in(state: &AppState, parts: &mut Parts) -> Result<Caller, Response> {
    match Caller::from_request_parts(parts, state).await {
        Ok(caller) => Ok(caller),
        Err(_) => {
            let mut response = page("signin.html", StatusCode::OK);
            if session_token(parts).is_some()
                && let Ok(clear) = crate::api::session::cookie(state, "", 0)
            {
                response.headers_mut().insert(header::SET_COOKIE, clear);
            }
            Err(response)
        }
    }
}

async fn asset(Path(path): Path<String>, parts: Parts) -> Response {
    // Pages are served at their own paths, not as assets.
    if path.ends_with(".html") {
        return page("not-found.html", StatusCode::NOT_FOUND);
    }
    serve(&path, parts.headers.get(header::IF_NONE_MATCH))
}

/// The app for a signed-in customer (the console for the admin, the dashboards for a company
/// key), the sign-in page for any other.
async fn home(State(state): State<AppState>, mut parts: Parts) -> Response {
    match signed_in(&state, &mut parts).await {
        Ok(Caller::Admin) => Redirect::to("/console").into_response(),
        Ok(Caller::Service { .. }) => Redirect::to("/dashboards").into_response(),
        Ok(Caller::Customer { .. }) => page("index.html", StatusCode::OK),
        Err(sign_in) => sign_in,
    }
}

/// Signed out: the sign-in page at `/`, which comes back to `path` (with its query); a dead
/// cookie is cleared on the way.
fn sign_in_first(path: &str, sign_in: &Response) -> Response {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    // A path keeps its slashes; everything but the unreserved characters is escaped.
    const NEXT: &percent_encoding::AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~')
        .remove(b'/');
    let next = utf8_percent_encode(path, NEXT);
    let mut back = Redirect::to(&format!("/?next={next}")).into_response();
    if let Some(clear) = sign_in.headers().get(header::SET_COOKIE) {
        back.headers_mut().insert(header::SET_COOKIE, clear.clone());
    }
    back
}

/// The dashboards (and a dashboard): for any signed-in key; what each key sees of the rows is
/// the query layer's to decide.
async fn dashboards(State(state): State<AppState>, mut parts: Parts) -> Response {
    signed_in_page(&state, &mut parts, "dashboards.html").await
}

/// The query page, for any signed-in key.
async fn query(State(state): State<AppState>, mut parts: Parts) -> Response {
    signed_in_page(&state, &mut parts, "query.html").await
}

async fn signed_in_page(state: &AppState, parts: &mut Parts, name: &str) -> Response {
    let back = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
    match signed_in(state, parts).await {
        Ok(_) => page(name, StatusCode::OK),
        Err(sign_in) => sign_in_first(&back, &sign_in),
    }
}

/// The engineers' console: for the admin's session only; `404` for anyone else signed in, as
/// the admin API answers them.
async fn console(State(state): State<AppState>, mut parts: Parts) -> Response {
    match signed_in(&state, &mut parts).await {
        Ok(Caller::Admin) => page("console.html", StatusCode::OK),
        Ok(_) => page("not-found.html", StatusCode::NOT_FOUND),
        Err(sign_in) => sign_in_first("/console", &sign_in),
    }
}

/// An image's page: for a signed-in customer who may see the image; `404` otherwise, whether
/// the image is another customer's or does not exist. Signed out, the sign-in page, which
/// comes back here.
async fn image_page(
    State(state): State<AppState>,
    Path(id): Path<String>,
    mut parts: Parts,
) -> Response {
    let Ok(id) = id.parse::<imagelake_core::ImageId>() else {
        return page("not-found.html", StatusCode::NOT_FOUND);
    };
    let caller = match signed_in(&state, &mut parts).await {
        Ok(caller) => caller,
        Err(sign_in) => return sign_in_first(&format!("/images/{id}"), &sign_in),
    };
    let visible = match state.store.get_image(id).await {
        Ok(Some(image)) => {
            // Image pages are a customer's, as the image API is (an admin's session is not one).
            matches!(caller, Caller::Customer { id, .. } if id == image.customer_id)
                && !image.is_expired(state.clock.now())
        }
        Ok(None) => false,
        Err(e) => {
            tracing::error!(error = %e, "image page lookup failed");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    if visible {
        page("image.html", StatusCode::OK)
    } else {
        page("not-found.html", StatusCode::NOT_FOUND)
    }
}

/// What pages may do, decided once when the router is built: the Content-Security-Policy of
/// every answer (this origin's own scripts, styles and connections only, and the bucket's path
/// where pages send large files straight to it) and whether they do.
#[derive(Clone)]
pub struct PagePolicy {
    csp: HeaderValue,
    pub direct_uploads: bool,
}

impl PagePolicy {
    pub fn for_state(state: &AppState) -> Self {
        let bucket = direct_uploads(state);
        let policy = format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; \
             connect-src 'self'{}; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            bucket
                .as_deref()
                .map(|b| format!(" {b}"))
                .unwrap_or_default()
        );
        // The bucket's source is checked to be plain (`UploadUrls::csp_source`), so the
        // policy is always a valid header.
        Self {
            csp: HeaderValue::from_str(&policy)
                .unwrap_or(HeaderValue::from_static("default-src 'none'")),
            direct_uploads: bucket.is_some(),
        }
    }
}

/// Where pages send large files, when they do: the deployment signs URLs, `web.direct_uploads`
/// is on, and the signed URLs' place makes a valid CSP source.
fn direct_uploads(state: &AppState) -> Option<String> {
    if !state.settings.web.direct_uploads {
        return None;
    }
    let source = state.upload_urls.as_ref()?.csp_source();
    if source.is_none() {
        tracing::warn!(
            "web.direct_uploads is on, but the storage endpoint is not a plain http(s) origin; pages upload through the API"
        );
    }
    source
}

/// What every answer says about how a browser may use it; handlers find the policy among the
/// request's extensions.
pub async fn security_headers(
    State(policy): State<PagePolicy>,
    mut request: Request,
    next: Next,
) -> Response {
    let csp = policy.csp.clone();
    request.extensions_mut().insert(policy);
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.entry("content-security-policy").or_insert(csp);
    for (name, value) in [
        ("x-frame-options", "DENY"),
        ("referrer-policy", "same-origin"),
        ("x-content-type-options", "nosniff"),
        ("cross-origin-opener-policy", "same-origin"),
    ] {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    response
}
