//! API keys and the admin token.
//!
//! Keys are 192 random bits (`ilk_` + 48 hex digits): far too many to guess, so one SHA-256 is a
//! sufficient at-rest hash (the approach of GitHub and Stripe tokens) and lookups stay a single
//! indexed read. Only the hash and a short prefix are stored; the key itself is shown once.
//!
//! Failed authentications are limited per client address (`limits.auth_failures_per_second`):
//! a request whose key this process has not seen succeed lately takes a token from its
//! address's bucket before the lookup (given back when the key is good), so once an address
//! has spent its failures, even many requests at once are answered `429` without a lookup and
//! guessing keys costs the database nothing. Keys in use keep working from that address. The client address is the
//! peer's, or, when the peer is a trusted proxy (`trusted_proxies`), the last address in
//! `X-Forwarded-For` that is not a trusted proxy.

use std::{
    collections::HashMap,
    fs,
    io::Write,
    net::IpAddr,
    path::Path,
    sync::Mutex,
    time::{Duration, Instant},
};

use axum::{extract::FromRequestParts, http::request::Parts};
use imagelake_core::{CustomerId, KeyId};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::{error::ApiError, settings::Settings, state::AppState};

pub const KEY_PREFIX: &str = "ilk_";

/// SHA-256 of a secret, hex-encoded.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new API key and the non-secret prefix shown beside it.
pub fn generate_key() -> (String, String) {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    let key = format!("{KEY_PREFIX}{}", hex::encode(bytes));
    let prefix = key[..12].to_owned();
    (key, prefix)
}

/// The admin token, held only as its hash.
#[derive(Clone)]
pub struct AdminToken {
    hash: String,
}

impl AdminToken {
    pub fn from_secret(secret: &str) -> Self {
        Self {
            hash: hash_secret(secret),
        }
    }

    /// Uses the configured token, or the one stored in `data_dir/admin-token`, generating and
    /// storing one (mode 0600) on first start.
    pub fn load_or_generate(settings: &Settings) -> anyhow::Result<Self> {
        if let Some(secret) = &settings.admin_token {
            return Ok(Self::from_secret(&secret.0));
        }
        let path = settings.data_dir.join("admin-token");
        if let Ok(existing) = fs::read_to_string(&path) {
            tracing::info!(path = %path.display(), "admin token read from file");
            return Ok(Self::from_secret(existing.trim()));
        }
        let (token, _) = generate_key();
        let token = token.replacen(KEY_PREFIX, "ila_", 1);
        write_private(&path, &token)?;
        tracing::warn!(path = %path.display(), "generated an admin token; it is stored in this file");
        Ok(Self::from_secret(&token))
    }

    fn matches(&self, hash: &str) -> bool {
        // Both sides are hashes of fixed length, compared without early exit.
        self.hash.len() == hash.len()
            && self
                .hash
                .bytes()
                .zip(hash.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

/// Who is calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Admin,
    Customer { id: CustomerId, key: KeyId },
}

impl Caller {
    /// Whether the caller may see this customer's data.
    pub fn can_access(&self, customer: CustomerId) -> bool {
        match self {
            Self::Admin => true,
            Self::Customer { id, .. } => *id == customer,
        }
    }
}

/// The bucket of the key rate limit a request was charged to, for handlers that do the work of
/// several requests in one (a multipart upload).
#[derive(Debug, Clone)]
pub struct RateKey(pub String);

/// A caller authenticated as a customer.
pub struct CustomerCaller(pub CustomerId);

/// A caller authenticated with the admin token.
pub struct Admin;

/// The raw bearer token of a request that is not from a customer or the admin (Pub/Sub push).
pub struct BearerToken(pub String);

impl FromRequestParts<AppState> for BearerToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        bearer(parts).map(|t| Self(t.to_owned()))
    }
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::unauthorized(
                "missing Authorization header; send `Authorization: Bearer <key>`",
            )
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
        let hash = hash_secret(bearer(parts)?);
        let caller = if state.admin.matches(&hash) {
            Caller::Admin
        } else {
            let client = client_address(parts, &state.trusted_proxies)
                .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
            let now = state.clock.now();
            let charged = !state.known_keys.contains(&hash);
            if charged {
                state
                    .auth_failures
                    .check(&client, now)
                    .map_err(too_many_failures)?;
            }
            let Some(key) = state.store.find_key(&hash).await? else {
                state.known_keys.forget(&hash);
                return Err(ApiError::unauthorized("invalid or revoked API key"));
            };
            if charged {
                state.auth_failures.refund(&client);
            }
            state.known_keys.remember(&hash);
            Caller::Customer {
                id: key.customer_id,
                key: key.id,
            }
        };
        state.limiter.check(&hash, state.clock.now())?;
        parts.extensions.insert(caller);
        parts.extensions.insert(RateKey(hash));
        Ok(caller)
    }
}

fn too_many_failures(mut refused: ApiError) -> ApiError {
    let wait = refused.retry_after.unwrap_or(1);
    refused.message =
        format!("too many failed authentications from this address; retry in {wait} s");
    refused
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

/// Hashes of the keys in use: read from the store at start, added when a key is issued or
/// authenticates, dropped when a lookup fails (a revoked key) or after a week unused. Their
/// requests are looked up even from an address that has spent its failed authentications; a
/// revoked key is still refused, by the lookup.
#[derive(Default)]
pub struct KnownKeys {
    seen: Mutex<HashMap<String, Instant>>,
}

impl KnownKeys {
    const KEEP: Duration = Duration::from_secs(7 * 86_400);
    const MAX: usize = 100_000;

    pub fn contains(&self, hash: &str) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.get(hash).is_some_and(|at| at.elapsed() < Self::KEEP)
    }

    pub fn remember(&self, hash: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= Self::MAX {
            seen.retain(|_, at| at.elapsed() < Self::KEEP);
            if seen.len() >= Self::MAX {
                seen.clear();
            }
        }
        seen.insert(hash.to_owned(), Instant::now());
    }

    /// Learns the keys in use from the store, so a restart does not make them strangers.
    pub async fn learn(&self, store: &dyn imagelake_metadata::MetadataStore) {
        match store.live_key_hashes(Self::MAX).await {
            Ok(hashes) => {
                let now = Instant::now();
                let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
                seen.extend(hashes.into_iter().map(|h| (h, now)));
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read the live keys; they are learnt as they are used")
            }
        }
    }

    pub fn forget(&self, hash: &str) {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(hash);
    }
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_hash_stably() {
        let (a, prefix) = generate_key();
        let (b, _) = generate_key();
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_PREFIX) && a.len() == 52 && a.starts_with(&prefix));
        assert_eq!(hash_secret(&a), hash_secret(&a));
        assert_ne!(hash_secret(&a), hash_secret(&b));
    }

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

    #[test]
    fn known_keys_are_remembered_until_forgotten() {
        let known = KnownKeys::default();
        assert!(!known.contains("h"));
        known.remember("h");
        assert!(known.contains("h"));
        known.forget("h");
        assert!(!known.contains("h"));
    }

    #[test]
    fn admin_token_matches_only_itself() {
        let admin = AdminToken::from_secret("s3cret");
        assert!(admin.matches(&hash_secret("s3cret")));
        assert!(!admin.matches(&hash_secret("s3cret ")));
        assert!(!admin.matches(""));
    }
}
