//! Verifying the OIDC tokens Pub/Sub push subscriptions send (`Authorization: Bearer <JWT>`),
//! so only the configured subscription's service account can hand work to the push endpoint.
//!
//! A token passes when its RS256 signature verifies with a key of the configured JSON Web Key
//! Set (Google's `https://www.googleapis.com/oauth2/v3/certs`, or a file), its `aud` is the
//! configured audience, its `iss` is Google, it has not expired, and (when configured) its
//! `email` is the push subscription's service account with `email_verified`.

use std::time::{Duration, Instant};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::Error;

/// Why a push token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token itself is wrong: not a JWT, a bad signature, another audience, issuer or
    /// sender, expired, or signed by a key the set does not hold.
    #[error("{0}")]
    Rejected(String),
    /// Google's key set could not be fetched or read, so no token can be checked now.
    #[error("the key set: {0}")]
    Keys(#[from] Error),
}

fn rejected(reason: impl Into<String>) -> TokenError {
    TokenError::Rejected(reason.into())
}

/// Google's signing keys for its OIDC tokens.
pub const GOOGLE_CERTS: &str = "https://www.googleapis.com/oauth2/v3/certs";
const ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];
/// Clock skew allowed on `exp` and `iat`.
const LEEWAY: i64 = 60;
/// How often an unknown `kid` may trigger a fetch of the key set (keys rotate daily).
const REFETCH: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Deserialize)]
struct Jwk {
    kid: Option<String>,
    kty: String,
    n: Option<String>,
    e: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

/// Where the key set comes from.
#[derive(Debug)]
pub enum KeySource {
    /// Fetched over HTTPS and cached; fetched again when a token names an unknown key.
    Url(String),
    /// Read once (tests, air-gapped setups).
    Fixed(String),
}

#[derive(Debug, Deserialize)]
struct Claims {
    aud: String,
    iss: String,
    exp: i64,
    #[serde(default)]
    iat: i64,
    email: Option<String>,
    #[serde(default)]
    email_verified: bool,
}

/// Checks push tokens.
#[derive(Debug)]
pub struct PushVerifier {
    audience: String,
    email: Option<String>,
    source: KeySource,
    client: reqwest::Client,
    keys: Mutex<(Vec<Jwk>, Option<Instant>)>,
}

impl PushVerifier {
    pub fn new(audience: String, email: Option<String>, source: KeySource) -> Result<Self, Error> {
        let keys = match &source {
            KeySource::Fixed(text) => parse_set(text)?,
            KeySource::Url(_) => Vec::new(),
        };
        Ok(Self {
            audience,
            email,
            source,
            client: reqwest::Client::new(),
            keys: Mutex::new((keys, None)),
        })
    }

    /// The verified token's `email`, or why it was refused.
    pub async fn verify(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(claims), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(rejected("the token is not a JWT"));
        };
        #[derive(Deserialize)]
        struct Header {
            alg: String,
            kid: Option<String>,
        }
        let header: Header = decode_json(header)?;
        if header.alg != "RS256" {
            return Err(rejected(format!(
                "unexpected token algorithm {}",
                header.alg
            )));
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| rejected("the token's signature is not base64url"))?;
        let signed = &token[..token.len() - parts_len(token)];
        let key = self.key(header.kid.as_deref()).await?;
        let (Some(n), Some(e)) = (&key.n, &key.e) else {
            return Err(rejected("the signing key has no RSA components"));
        };
        let n = URL_SAFE_NO_PAD
            .decode(n)
            .map_err(|e| Error::malformed("key set", e))?;
        let e = URL_SAFE_NO_PAD
            .decode(e)
            .map_err(|e| Error::malformed("key set", e))?;
        RsaPublicKeyComponents { n, e }
            .verify(&RSA_PKCS1_2048_8192_SHA256, signed.as_bytes(), &signature)
            .map_err(|_| rejected("the token's signature does not verify"))?;
        let claims: Claims = decode_json(claims)?;
        self.check(&claims, now.timestamp())?;
        Ok(claims.email)
    }

    fn check(&self, claims: &Claims, now: i64) -> Result<(), TokenError> {
        if claims.aud != self.audience {
            return Err(rejected(format!(
                "the token is for audience {:?}",
                claims.aud
            )));
        }
        if !ISSUERS.contains(&claims.iss.as_str()) {
            return Err(rejected(format!(
                "the token was issued by {:?}",
                claims.iss
            )));
        }
        if claims.exp + LEEWAY < now {
            return Err(rejected("the token has expired"));
        }
        if claims.iat - LEEWAY > now {
            return Err(rejected("the token is issued in the future"));
        }
        if let Some(expected) = &self.email
            && (claims.email.as_ref() != Some(expected) || !claims.email_verified)
        {
            return Err(rejected(
                "the token is not from the push subscription's service account",
            ));
        }
        Ok(())
    }

    /// The key a token names, fetching the set again (at most once a minute) when it is unknown.
    async fn key(&self, kid: Option<&str>) -> Result<Jwk, TokenError> {
        let mut cached = self.keys.lock().await;
        let find = |keys: &[Jwk]| {
            keys.iter()
                .find(|k| k.kty == "RSA" && (kid.is_none() || k.kid.as_deref() == kid))
                .cloned()
        };
        if let Some(key) = find(&cached.0) {
            return Ok(key);
        }
        let KeySource::Url(url) = &self.source else {
            return Err(unknown_key());
        };
        if cached.1.is_some_and(|at| at.elapsed() < REFETCH) {
            return Err(unknown_key());
        }
        cached.1 = Some(Instant::now());
        let text = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| Error::unreachable("the key set", e))?
            .text()
            .await
            .map_err(|e| Error::unreachable("the key set", e))?;
        cached.0 = parse_set(&text)?;
        find(&cached.0).ok_or_else(unknown_key)
    }
}

/// Length of `.signature` at the end of a token.
fn parts_len(token: &str) -> usize {
    token.rsplit('.').next().map_or(0, |s| s.len() + 1)
}

fn unknown_key() -> TokenError {
    rejected("the token's key is not in the key set")
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| rejected("the token is not base64url"))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| rejected(format!("the token's JSON is malformed: {e}")))
}

fn parse_set(text: &str) -> Result<Vec<Jwk>, Error> {
    serde_json::from_str::<JwkSet>(text)
        .map(|s| s.keys)
        .map_err(|e| Error::malformed("JSON Web Key Set", e))
}
