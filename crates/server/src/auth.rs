//! Who is calling: the bearer token of a request as a customer key or the admin token (see
//! `imagelake_runtime::keys`), as axum extractors.
//!
//! Failed authentications are limited per client address (`limits.auth_failures_per_second`):
//! a request whose key this process has not seen succeed lately takes a token from its
//! address's bucket before the lookup (given back when the key is good), so once an address
//! has spent its failures, even many requests at once are answered `429` without a lookup and
//! guessing keys costs the database nothing. Keys in use keep working from that address. The
//! client address is the peer's, or, when the peer is a trusted proxy (`trusted_proxies`), the last address in
//! `X-Forwarded-For` that is not a trusted proxy.

use std::net::IpAddr;

use axum::{
    extract::FromRequestParts,
    http::{
        header::{AUTHORIZATION, COOKIE},
        request::Parts,
    },
};
use imagelake_core::{
    CustomerId, KeyId,
    records::{KeyRole, Session},
};
use imagelake_runtime::{
    AppState, Error,
    keys::{AuthAttempt, KnownKeys, hash_secret, same_bytes},
};

use crate::error::ApiError;

/// Who is calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Admin,
    Customer {
        id: CustomerId,
        key: KeyId,
    },
    /// A company key with a role (`ingest`, `analyst`): never a customer's data.
    Service {
        key: KeyId,
        role: KeyRole,
    },
}

impl Caller {
    /// The caller's key; the admin token, which is no stored key, is the nil id.
    pub fn key_id(&self) -> KeyId {
        match self {
            Self::Customer { key, .. } | Self::Service { key, .. } => *key,
            Self::Admin => KeyId(uuid::Uuid::nil()),
        }
    }

    /// Whether the caller may see this customer's data.
    pub fn can_access(&self, customer: CustomerId) -> bool {
        match self {
            Self::Admin => true,
            Self::Customer { id, .. } => *id == customer,
            Self::Service { .. } => false,
        }
    }

    /// Refuses a company key at a door of customers' data (`403`, as every such door does).
    pub fn not_a_company_key(&self) -> Result<(), ApiError> {
        match self {
            Self::Service { role, .. } => Err(not_for(*role)),
            Self::Admin | Self::Customer { .. } => Ok(()),
        }
    }

    /// Refuses a company key that may not query the lake (`403`): the SQL door and the
    /// dashboards, which run on it.
    pub fn may_query(&self) -> Result<(), ApiError> {
        match self {
            Self::Service { role, .. } => role
                .may_query()
                .map_err(|message| ApiError::new(imagelake_core::ErrorCode::Forbidden, message)),
            Self::Admin | Self::Customer { .. } => Ok(()),
        }
    }

    /// The role `api_requests` records: `admin`, `customer`, `ingest` or `analyst`.
    pub fn role(&self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Customer { .. } => "customer",
            Self::Service { role, .. } => role.as_str(),
        }
    }
}

/// What a company key is told when it knocks on a door that is not its own.
fn not_for(role: KeyRole) -> ApiError {
    let may = match role {
        KeyRole::Ingest => "may only post lake records",
        KeyRole::Analyst => "may only query the lake",
    };
    ApiError::new(
        imagelake_core::ErrorCode::Forbidden,
        format!("an {} key {may}", role.as_str()),
    )
}

/// The bucket of the key rate limit a request was charged to, for handlers that do the work of
/// several requests in one (a multipart upload).
#[derive(Debug, Clone)]
pub struct RateKey(pub String);

/// A caller authenticated as a customer.
pub struct CustomerCaller(pub CustomerId);

/// A caller authenticated with the admin token.
pub struct Admin;

/// A caller that may post lake records: the admin token, or a company key of role `ingest`;
/// the key whose share of the upload memory budget its posts take (the admin token's is the
/// nil id).
pub struct LakeSender(pub KeyId);

/// The raw bearer token of a request that is not from a customer or the admin (Pub/Sub push).
pub struct BearerToken(pub String);

impl FromRequestParts<AppState> for BearerToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        bearer(parts).map(|t| Self(t.to_owned()))
    }
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
        ApiError::unauthorized("missing Authorization header; send `Authorization: Bearer <key>`")
    })?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| ApiError::unauthorized("Authorization must use the Bearer scheme"))?;
    Ok(token.trim())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(*caller);
        }
        let hash = match session_token(parts) {
            Some(token) if !parts.headers.contains_key(AUTHORIZATION) => {
                let session = signed_in(parts, state, &token).await?;
                check_csrf(parts, &session)?;
                let hash = session.key_hash.clone();
                parts.extensions.insert(session);
                hash
            }
            _ => hash_secret(bearer(parts)?),
        };
        let caller = identify(parts, state, &hash)
            .await?
            .ok_or_else(|| ApiError::unauthorized("invalid or revoked API key"))?;
        state.limiter.check(&hash, state.clock.now())?;
        if let Some(slot) = parts.extensions.get::<crate::requests::CallerSlot>() {
            let _ = slot.0.set(caller);
        }
        parts.extensions.insert(caller);
        parts.extensions.insert(RateKey(hash));
        Ok(caller)
    }
}

/// Who holds the key hashing to `hash`, if anyone. A lookup for a hash this process has not
/// seen succeed lately is paid for from the client address's failure budget first.
pub async fn identify(
    parts: &Parts,
    state: &AppState,
    hash: &str,
) -> Result<Option<Caller>, ApiError> {
    if state.admin.matches(hash) {
        return Ok(Some(Caller::Admin));
    }
    budgeted(parts, state, &state.known_keys, hash, async {
        if let Some(key) = state.store.find_key(hash).await? {
            return Ok(Some(Caller::Customer {
                id: key.customer_id,
                key: key.id,
            }));
        }
        Ok(state
            .store
            .find_service_key(hash)
            .await?
            .map(|key| Caller::Service {
                key: key.key_id,
                role: key.role,
            }))
    })
    .await
}

/// Runs the lookup of the secret hashing to `hash` within the client's failure budget: charged
/// before unless `known` holds the hash, refunded when something was found (then `known`
/// remembers it; a miss forgets it).
async fn budgeted<T>(
    parts: &Parts,
    state: &AppState,
    known: &KnownKeys,
    hash: &str,
    lookup: impl Future<Output = Result<Option<T>, ApiError>>,
) -> Result<Option<T>, ApiError> {
    let client = client_address(parts, &state.trusted_proxies)
        .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
    let attempt = AuthAttempt::new(known, client, Some(hash));
    attempt
        .pay(&state.auth_failures, state.clock.now())
        .map_err(too_many_failures)?;
    let found = lookup.await?;
    if found.is_some() {
        attempt.succeeded(&state.auth_failures, known);
    } else {
        attempt.failed(&state.auth_failures, known, state.clock.now());
    }
    Ok(found)
}

/// The name of the cookie holding a browser's session token.
pub const SESSION_COOKIE: &str = "imagelake_session";
/// The header a state-changing request through a session carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The session token in the request's cookies, if any.
pub fn session_token(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim_matches('"').to_owned())
}

/// The live session `token` opens, or `401`.
async fn signed_in(parts: &Parts, state: &AppState, token: &str) -> Result<Session, ApiError> {
    let token_hash = hash_secret(token);
    let session = budgeted(parts, state, &state.known_sessions, &token_hash, async {
        Ok(state.store.find_session(&token_hash).await?)
    })
    .await?;
    match session {
        Some(session) if session.expires_at > state.clock.now() => Ok(session),
        _ => {
            state.known_sessions.forget(&token_hash);
            Err(ApiError::unauthorized(
                "not signed in, or the session ended; sign in again",
            ))
        }
    }
}

/// A request that changes something through a session must carry the session's CSRF token: a
/// page of another site can make the browser send the cookie, never the header.
fn check_csrf(parts: &Parts, session: &Session) -> Result<(), ApiError> {
    if parts.method.is_safe() {
        return Ok(());
    }
    let sent = parts
        .headers
        .get(CSRF_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if same_bytes(sent, session.csrf.as_bytes()) {
        return Ok(());
    }
    Err(ApiError::new(
        imagelake_core::ErrorCode::Forbidden,
        "a request signed in by cookie that changes something must send the X-CSRF-Token header from GET /v1/session",
    ))
}

fn too_many_failures(mut refused: Error) -> ApiError {
    let wait = refused.retry_after.unwrap_or(1);
    refused.message =
        format!("too many failed authentications from this address; retry in {wait} s");
    ApiError(refused)
}

/// The client's address: the peer's, or what trusted proxies say in `X-Forwarded-For`.
pub fn client_address(parts: &Parts, trusted: &[ipnet::IpNet]) -> Option<IpAddr> {
    let peer = crate::connections::peer(parts)?.ip();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let forwarded: Vec<&str> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    // Walk back from the nearest hop: the first one not a trusted proxy is the client; what lies
    // before it was written by the client and proves nothing, so the walk stops at anything that
    // is not an address, on the last trusted hop.
    let mut client = peer;
    for hop in forwarded.iter().rev() {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) if is_trusted(&ip) => client = ip,
            Ok(ip) => return Some(ip),
            Err(_) => break,
        }
    }
    Some(client)
}

impl FromRequestParts<AppState> for CustomerCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match Caller::from_request_parts(parts, state).await? {
            Caller::Customer { id, .. } => Ok(Self(id)),
            Caller::Admin => Err(ApiError::invalid(
                "this endpoint acts for a customer: use a customer API key",
            )),
            Caller::Service { role, .. } => Err(not_for(role)),
        }
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match Caller::from_request_parts(parts, state).await? {
            Caller::Admin => Ok(Self),
            // Admin endpoints do not exist for customers.
            Caller::Customer { .. } => Err(ApiError::not_found("no such resource")),
            Caller::Service { role, .. } => Err(not_for(role)),
        }
    }
}

/// A caller that may read `/metrics`: the metrics token (`metrics_token`, which opens nothing
/// else), or the admin.
pub struct MetricsReader;

impl FromRequestParts<AppState> for MetricsReader {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let (Some(expected), Ok(token)) = (&state.settings.metrics_token, bearer(parts))
            && same_bytes(
                hash_secret(&expected.0).as_bytes(),
                hash_secret(token).as_bytes(),
            )
        {
            return Ok(Self);
        }
        Admin::from_request_parts(parts, state).await.map(|_| Self)
    }
}

impl FromRequestParts<AppState> for LakeSender {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match Caller::from_request_parts(parts, state).await? {
            caller @ Caller::Admin => Ok(Self(caller.key_id())),
            Caller::Service {
                role: KeyRole::Ingest,
                key,
            } => Ok(Self(key)),
            Caller::Service { role, .. } => Err(not_for(role)),
            Caller::Customer { .. } => Err(ApiError::new(
                imagelake_core::ErrorCode::Forbidden,
                "lake records are posted with an ingest key or the admin token, not a customer key",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(peer: &str, forwarded: Option<&str>) -> Parts {
        let mut builder = axum::http::Request::builder();
        if let Some(value) = forwarded {
            builder = builder.header("x-forwarded-for", value);
        }
        let (mut parts, ()) = builder.body(()).unwrap().into_parts();
        let peer: std::net::SocketAddr = format!("{peer}:4000").parse().unwrap();
        parts.extensions.insert(axum::extract::ConnectInfo(peer));
        parts
    }

    #[test]
    fn the_client_is_the_peer_unless_a_trusted_proxy_forwards() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        // An untrusted peer cannot claim another address.
        assert_eq!(
            client_address(&request("203.0.113.9", Some("1.2.3.4")), &trusted),
            ip("203.0.113.9")
        );
        // Behind the proxy, the nearest untrusted hop; what the client wrote before it is ignored.
        let spoofed = request("10.1.1.1", Some("1.2.3.4, 198.51.100.7, 10.2.2.2"));
        assert_eq!(client_address(&spoofed, &trusted), ip("198.51.100.7"));
        assert_eq!(
            client_address(&request("10.1.1.1", None), &trusted),
            ip("10.1.1.1")
        );
        assert_eq!(
            client_address(&request("10.1.1.1", None), &[]),
            ip("10.1.1.1")
        );
    }
}
