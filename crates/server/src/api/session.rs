//! Signing in from a browser: a key is exchanged for a server-side session whose token the
//! browser holds only in an `HttpOnly`, `SameSite=Strict` cookie (`Secure` by
//! `web.secure_cookies`). The key never reaches the page's storage. Requests with the cookie are
//! the key's requests (`auth`), and those that change something must carry the session's CSRF
//! token, which `GET /v1/session` gives to the page.

use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use imagelake_core::{CustomerId, KeyId, records::Session};
use imagelake_runtime::{
    AppState,
    keys::{hash_secret, random_token},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::parse_id;
use crate::{
    auth::{Caller, SESSION_COOKIE, identify},
    error::{ApiError, JsonBody},
};

/// A sign-in: the API key to exchange for a session.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    pub key: String,
}

/// A session as its owner sees it.
#[derive(Serialize, ToSchema)]
pub struct SessionInfo {
    #[schema(value_type = String, format = Uuid)]
    id: uuid::Uuid,
    #[schema(value_type = String, format = Uuid)]
    key_id: KeyId,
    created_at: chrono::DateTime<chrono::Utc>,
    expires_at: chrono::DateTime<chrono::Utc>,
    user_agent: Option<String>,
}

impl From<&Session> for SessionInfo {
    fn from(s: &Session) -> Self {
        Self {
            id: s.id,
            key_id: s.key_id,
            created_at: s.created_at,
            expires_at: s.expires_at,
            user_agent: s.user_agent.clone(),
        }
    }
}

/// The signed-in session, who it acts for, and the token its changes must send in
/// `X-CSRF-Token`.
#[derive(Serialize, ToSchema)]
pub struct CurrentSession {
    session: SessionInfo,
    /// `customer`, `admin`, `ingest` or `analyst`.
    role: &'static str,
    #[schema(value_type = Option<String>, format = Uuid)]
    customer_id: Option<CustomerId>,
    csrf_token: String,
    /// What an upload may be, for pages to refuse before sending.
    limits: UploadLimits,
}

/// The upload limits of this deployment.
#[derive(Serialize, ToSchema)]
pub struct UploadLimits {
    max_body_bytes: u64,
    content_types: [&'static str; 4],
    /// Files this large or larger go straight to the bucket through a signed URL
    /// (`POST /v1/uploads`); null where the deployment does not sign URLs.
    direct_from_bytes: Option<u64>,
}

/// Where the pages start sending files straight to the bucket: large enough that passing
/// through the API would cost it real memory and bandwidth, small enough that every large photo
/// does.
const DIRECT_FROM_BYTES: u64 = 8 << 20;

/// The sessions opened with the caller's key, newest first.
#[derive(Serialize, ToSchema)]
pub struct SessionList {
    sessions: Vec<SessionInfo>,
}

fn current(state: &AppState, parts: &Parts, session: &Session, caller: Caller) -> CurrentSession {
    let direct = parts
        .extensions
        .get::<crate::web::PagePolicy>()
        .is_some_and(|p| p.direct_uploads);
    CurrentSession {
        session: session.into(),
        role: caller.role(),
        customer_id: match caller {
            Caller::Customer { id, .. } => Some(id),
            _ => None,
        },
        csrf_token: session.csrf.clone(),
        limits: UploadLimits {
            max_body_bytes: state.settings.limits.max_body_bytes,
            content_types: ["image/jpeg", "image/png", "image/webp", "image/gif"],
            direct_from_bytes: direct.then_some(DIRECT_FROM_BYTES),
        },
    }
}

/// Answers that carry a session's secrets are never stored by the browser or a proxy.
const NO_STORE: (header::HeaderName, HeaderValue) =
    (header::CACHE_CONTROL, HeaderValue::from_static("no-store"));

/// The `Set-Cookie` value of a session token; an empty token with no lifetime clears it.
pub fn cookie(state: &AppState, token: &str, max_age: i64) -> Result<HeaderValue, ApiError> {
    let secure = if state.settings.web.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let value = format!(
        "{SESSION_COOKIE}={token}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    );
    HeaderValue::from_str(&value).map_err(|e| ApiError::internal(&e))
}

/// A sign-in from this site's own pages: as JSON (which a form of another site cannot send)
/// and, where the browser says where it came from, not from another site. Checked before the
/// body is read.
pub struct FromOwnPage;

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for FromOwnPage {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let headers = &parts.headers;
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let cross_site = headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes() == b"cross-site");
        if json && !cross_site {
            return Ok(Self);
        }
        Err(ApiError::new(
            imagelake_core::ErrorCode::Forbidden,
            "sign in from this site's pages with a JSON body {\"key\": \"...\"}",
        ))
    }
}

/// Exchanges an API key for a session: the token in a cookie, the CSRF token in the answer.
#[utoipa::path(post, path = "/v1/session", tag = "sessions", request_body = SignIn,
    responses((status = 201, body = CurrentSession, description = "Signed in; `Set-Cookie` holds the session"),
        (status = 400, body = super::ErrorBody, description = "`invalid_request`: not a JSON object with a string `key`"),
        (status = 401, body = super::ErrorBody, description = "`unauthorized`: the key is wrong or revoked"),
        (status = 403, body = super::ErrorBody, description = "`forbidden`: not JSON, sent from another site, or an ingest key (it has no pages)"),
        (status = 429, body = super::ErrorBody, description = "`rate_limited`: too many failed sign-ins from this address")))]
pub async fn sign_in(
    State(state): State<AppState>,
    _: FromOwnPage,
    parts: Parts,
    JsonBody(body): JsonBody<SignIn>,
) -> Result<Response, ApiError> {
    let key_hash = hash_secret(body.key.trim());
    let caller = identify(&parts, &state, &key_hash)
        .await?
        .ok_or_else(|| ApiError::unauthorized("invalid or revoked API key"))?;
    if let Caller::Service {
        role: imagelake_core::records::KeyRole::Ingest,
        ..
    } = caller
    {
        return Err(ApiError::new(
            imagelake_core::ErrorCode::Forbidden,
            "an ingest key sends records; it has no pages. Sign in with a customer's key, an analyst key or the admin token",
        ));
    }
    // Sign-ins are the key's requests: its rate limit bounds how many sessions it opens.
    state.limiter.check(&key_hash, state.clock.now())?;
    let token = random_token();
    let now = state.clock.now();
    let ttl = chrono::Duration::from_std(state.settings.web.session_ttl.0)
        .map_err(|e| ApiError::internal(&e))?;
    let session = Session {
        id: uuid::Uuid::now_v7(),
        token_hash: hash_secret(&token),
        key_id: caller.key_id(),
        key_hash,
        csrf: random_token(),
        created_at: now,
        expires_at: now + ttl,
        user_agent: parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(256).collect()),
    };
    state.store.put_session(&session).await?;
    tracing::info!(session_id = %session.id, key_id = %session.key_id, role = caller.role(), "signed in");
    let set_cookie = cookie(&state, &token, ttl.num_seconds())?;
    Ok((
        StatusCode::CREATED,
        [(header::SET_COOKIE, set_cookie), NO_STORE],
        Json(current(&state, &parts, &session, caller)),
    )
        .into_response())
}

/// The session the request came with.
fn this_session(parts: &Parts) -> Result<Session, ApiError> {
    parts.extensions.get::<Session>().cloned().ok_or_else(|| {
        ApiError::unauthorized(
            "this request is not signed in by cookie; sign in at POST /v1/session",
        )
    })
}

/// The signed-in session, with the CSRF token the page sends with its changes.
#[utoipa::path(get, path = "/v1/session", tag = "sessions", security(("bearer" = [])),
    responses((status = 200, body = CurrentSession),

        (status = 401, body = super::ErrorBody, description = "`unauthorized`: not signed in by cookie, or the session ended")))]
pub async fn get_current(
    caller: Caller,
    State(state): State<AppState>,
    parts: Parts,
) -> Result<Response, ApiError> {
    let current = current(&state, &parts, &this_session(&parts)?, caller);
    Ok(([NO_STORE], Json(current)).into_response())
}

/// Signs out: the session ends at once and the cookie is cleared.
#[utoipa::path(delete, path = "/v1/session", tag = "sessions", security(("bearer" = [])),
    responses((status = 204, description = "Signed out"),

        (status = 403, body = super::ErrorBody, description = "`forbidden`: no X-CSRF-Token header")))]
pub async fn sign_out(
    caller: Caller,
    State(state): State<AppState>,
    parts: Parts,
) -> Result<Response, ApiError> {
    let session = this_session(&parts)?;
    state.store.end_session(caller.key_id(), session.id).await?;
    state.known_sessions.forget(&session.token_hash);
    tracing::info!(session_id = %session.id, "signed out");
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, cookie(&state, "", 0)?)],
    )
        .into_response())
}

/// The sessions opened with the caller's key (signed in by cookie or by the key itself).
#[utoipa::path(get, path = "/v1/sessions", tag = "sessions", security(("bearer" = [])),
    responses((status = 200, body = SessionList)))]
pub async fn list(
    caller: Caller,
    State(state): State<AppState>,
) -> Result<Json<SessionList>, ApiError> {
    let now = state.clock.now();
    let sessions = state.store.key_sessions(caller.key_id()).await?;
    Ok(Json(SessionList {
        sessions: sessions
            .iter()
            .filter(|s| s.expires_at > now)
            .map(SessionInfo::from)
            .collect(),
    }))
}

/// Ends one of the sessions opened with the caller's key.
#[utoipa::path(delete, path = "/v1/sessions/{id}", tag = "sessions", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)),
    responses((status = 204, description = "Ended"),
        (status = 404, body = super::ErrorBody, description = "`not_found`: no such session of this key")))]
pub async fn end(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: uuid::Uuid = parse_id(&id)?;
    if state.store.end_session(caller.key_id(), id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no such session of this key"))
    }
}
