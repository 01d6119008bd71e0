//! One `api_requests` record per request the API answers, handed to the lake without waiting:
//! the route's template (never the raw path, which carries ids), the method, the status and
//! error code, who called (customer and key role, once authenticated), the bytes each way and
//! the time to the answer's head.

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use axum::{
    body::Body,
    extract::{MatchedPath, Request, State},
    http::header,
    middleware::Next,
    response::Response,
};
use http_body::Body as _;
use http_body_util::BodyExt;
use imagelake_core::ErrorCode;
use imagelake_runtime::{AppState, lake::ApiRequest};

use crate::auth::Caller;

/// Where the authentication of a request leaves who called, for its record.
#[derive(Clone, Default)]
pub struct CallerSlot(pub Arc<OnceLock<Caller>>);

/// The middleware: runs the request, then records it.
pub async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(lake) = state.lake.clone() else {
        return next.run(request).await;
    };
    let started = Instant::now();
    let at = state.clock.now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let slot = CallerSlot::default();
    let received = Arc::new(AtomicU64::new(0));
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(slot.clone());
    let counter = received.clone();
    let body = body.map_frame(move |frame| {
        if let Some(data) = frame.data_ref() {
            counter.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        frame
    });
    let response = next.run(Request::from_parts(parts, Body::new(body))).await;
    let caller = slot.0.get().copied();
    lake.record_request(ApiRequest {
        at,
        route,
        method,
        status: response.status().as_u16(),
        error_code: response
            .extensions()
            .get::<ErrorCode>()
            .map(|c| c.as_str().to_owned()),
        customer_id: match caller {
            Some(Caller::Customer { id, .. }) => Some(id),
            _ => None,
        },
        key_role: caller.map(|c| c.role().to_owned()),
        request_bytes: received.load(Ordering::Relaxed),
        response_bytes: response_bytes(&response),
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
    });
    response
}

/// The body's length as the answer declares it, or as its body knows it.
fn response_bytes(response: &Response) -> u64 {
    response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .or_else(|| response.body().size_hint().exact())
        .unwrap_or(0)
}
