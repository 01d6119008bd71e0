//! Signing for Google Cloud: V4 signed URLs (`GOOG4-RSA-SHA256`) that let a customer write one
//! object straight into the bucket, and the self-signed JWTs a service-account key uses as
//! access tokens.
//!
//! A signed URL binds the method, the object's path, the expiry and every header listed in
//! `X-Goog-SignedHeaders`; GCS refuses a request that changes any of them. The signature comes
//! from a service-account key file (RSA-SHA256 here, with `ring`), or from IAM `signBlob` for a
//! service account without a key (GKE Workload Identity), which needs the
//! `roles/iam.serviceAccountTokenCreator` grant on itself.

use std::{collections::BTreeMap, path::Path, time::Duration};

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use chrono::{DateTime, Utc};
use ring::{
    rand::SystemRandom,
    signature::{RSA_PKCS1_SHA256, RsaKeyPair},
};
use rustls_pki_types::{PrivatePkcs8KeyDer, pem::PemObject};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::{
    auth::TokenSource,
    error::{Error, Result},
};

/// The longest validity GCS accepts for a V4 signed URL.
pub const MAX_EXPIRY: Duration = Duration::from_secs(7 * 86_400);

/// A service-account key file (`type: service_account`).
pub struct ServiceAccountKey {
    pub client_email: String,
    /// Names the key in Google's published certificates (the JWT `kid`).
    pub private_key_id: Option<String>,
    key: RsaKeyPair,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServiceAccountKey({})", self.client_email)
    }
}

impl ServiceAccountKey {
    pub fn from_json(text: &str) -> Result<Self> {
        #[derive(Deserialize)]
        struct File {
            client_email: String,
            private_key: String,
            private_key_id: Option<String>,
        }
        let file: File = serde_json::from_str(text)
            .map_err(|e| Error::Credentials(format!("not a service-account key: {e}")))?;
        let der = PrivatePkcs8KeyDer::from_pem_slice(file.private_key.as_bytes()).map_err(|e| {
            Error::Credentials(format!(
                "the key file's private_key is not a PKCS#8 PEM key: {e}"
            ))
        })?;
        let key = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).map_err(|e| {
            Error::Credentials(format!("the key file's private_key is not an RSA key: {e}"))
        })?;
        Ok(Self {
            client_email: file.client_email,
            private_key_id: file.private_key_id,
            key,
        })
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Credentials(format!("reading {}: {e}", path.display())))?;
        Self::from_json(&text)
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                message,
                &mut signature,
            )
            .map_err(|_| Error::Credentials("RSA signing failed".to_owned()))?;
        Ok(signature)
    }

    /// Whether `signature` is this key's signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            self.key.public().as_ref(),
        );
        public.verify(message, signature).is_ok()
    }

    /// A self-signed JWT that Google APIs accept as an access token for `scope`.
    pub fn access_token(&self, scope: &str, now: DateTime<Utc>) -> Result<String> {
        let iat = now.timestamp();
        self.jwt(&json!({
            "iss": self.client_email, "sub": self.client_email, "scope": scope,
            "iat": iat, "exp": iat + 3600,
        }))
    }

    /// An RS256 JWT of `claims`, with this key's id as `kid`.
    pub fn jwt(&self, claims: &serde_json::Value) -> Result<String> {
        let mut header = json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.private_key_id {
            header["kid"] = json!(kid);
        }
        let header = URL_SAFE_NO_PAD.encode(header.to_string());
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signed = format!("{header}.{claims}");
        let signature = URL_SAFE_NO_PAD.encode(self.sign(signed.as_bytes())?);
        Ok(format!("{signed}.{signature}"))
    }
}

/// Who signs URLs.
#[derive(Debug)]
pub enum Signer {
    /// A service-account key file.
    Key(ServiceAccountKey),
    /// IAM Credentials `signBlob` on behalf of `email`, authorised by `tokens`.
    Iam {
        email: String,
        tokens: TokenSource,
        client: reqwest::Client,
        endpoint: String,
    },
}

impl Signer {
    /// IAM `signBlob` for `email` with tokens from the metadata server.
    pub fn iam(email: impl Into<String>) -> Self {
        Self::Iam {
            email: email.into(),
            tokens: TokenSource::metadata_server(),
            client: reqwest::Client::new(),
            endpoint: "https://iamcredentials.googleapis.com".to_owned(),
        }
    }

    pub fn email(&self) -> &str {
        match self {
            Self::Key(key) => &key.client_email,
            Self::Iam { email, .. } => email,
        }
    }

    pub async fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        match self {
            Self::Key(key) => key.sign(message),
            Self::Iam {
                email,
                tokens,
                client,
                endpoint,
            } => sign_blob(client, tokens, endpoint, email, message).await,
        }
    }
}

const IAM: &str = "IAM Credentials";

async fn sign_blob(
    client: &reqwest::Client,
    tokens: &TokenSource,
    endpoint: &str,
    email: &str,
    message: &[u8],
) -> Result<Vec<u8>> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Signed {
        signed_blob: String,
    }
    let url = format!("{endpoint}/v1/projects/-/serviceAccounts/{email}:signBlob");
    let mut request = client
        .post(url)
        .json(&json!({"payload": STANDARD.encode(message)}));
    if let Some(token) = tokens.token(client).await? {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .map_err(|e| Error::unreachable(IAM, e))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(Error::from_status(IAM, status, "signBlob", body));
    }
    let signed: Signed = response
        .json()
        .await
        .map_err(|e| Error::malformed("signBlob answer", e))?;
    STANDARD
        .decode(signed.signed_blob)
        .map_err(|e| Error::malformed("signBlob signature", e))
}

/// What a signed URL allows.
#[derive(Debug, Clone)]
pub struct UrlRequest {
    pub method: String,
    pub bucket: String,
    pub object: String,
    /// Headers the request must carry exactly (names in any case); `host` is added.
    pub headers: BTreeMap<String, String>,
    pub expires: Duration,
    pub now: DateTime<Utc>,
}

/// The parts of a V4 signature before the signing itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canonical {
    /// `https://host/bucket/object`.
    pub resource: String,
    /// The query without the signature, sorted and encoded.
    pub query: String,
    pub request: String,
    pub datetime: String,
    pub scope: String,
}

impl Canonical {
    pub fn to_sign(&self) -> String {
        let digest = hex::encode(Sha256::digest(self.request.as_bytes()));
        format!(
            "GOOG4-RSA-SHA256\n{}\n{}\n{digest}",
            self.datetime, self.scope
        )
    }

    pub fn url(&self, signature: &[u8]) -> String {
        format!(
            "{}?{}&X-Goog-Signature={}",
            self.resource,
            self.query,
            hex::encode(signature)
        )
    }
}

/// RFC 3986 encoding: everything but unreserved characters (and `/` in paths) as `%XX`.
fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The canonical request and string to sign for `request` at `endpoint`
/// (`https://storage.googleapis.com`, or the emulator's `http://host:port`).
pub fn canonical(endpoint: &str, email: &str, request: &UrlRequest) -> Canonical {
    let host = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest)
        .trim_end_matches('/');
    let path = format!("/{}/{}", request.bucket, encode(&request.object, true));
    let mut headers: BTreeMap<String, String> = request
        .headers
        .iter()
        .map(|(k, v)| {
            let value = v.split_whitespace().collect::<Vec<_>>().join(" ");
            (k.to_ascii_lowercase(), value)
        })
        .collect();
    headers.insert("host".into(), host.to_owned());
    let signed_headers = headers.keys().cloned().collect::<Vec<_>>().join(";");
    let datetime = request.now.format("%Y%m%dT%H%M%SZ").to_string();
    let scope = format!("{}/auto/storage/goog4_request", &datetime[..8]);
    let expires = request.expires.min(MAX_EXPIRY).as_secs();
    let params = BTreeMap::from([
        ("X-Goog-Algorithm", "GOOG4-RSA-SHA256".to_owned()),
        ("X-Goog-Credential", format!("{email}/{scope}")),
        ("X-Goog-Date", datetime.clone()),
        ("X-Goog-Expires", expires.to_string()),
        ("X-Goog-SignedHeaders", signed_headers.clone()),
    ]);
    let query = params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k, false), encode(v, false)))
        .collect::<Vec<_>>()
        .join("&");
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let canonical_request = format!(
        "{}\n{path}\n{query}\n{canonical_headers}\n{signed_headers}\nUNSIGNED-PAYLOAD",
        request.method
    );
    let scheme = endpoint.split_once("://").map_or("https", |(s, _)| s);
    Canonical {
        resource: format!("{scheme}://{host}{path}"),
        query,
        request: canonical_request,
        datetime,
        scope,
    }
}

/// A V4 signed URL for `request`.
pub async fn signed_url(signer: &Signer, endpoint: &str, request: &UrlRequest) -> Result<String> {
    let canonical = canonical(endpoint, signer.email(), request);
    let signature = signer.sign(canonical.to_sign().as_bytes()).await?;
    Ok(canonical.url(&signature))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The "Simple GET" case of Google's storage conformance tests (`v4_signatures.json`).
    #[test]
    fn matches_googles_conformance_case() {
        let request = UrlRequest {
            method: "GET".into(),
            bucket: "test-bucket".into(),
            object: "test-object".into(),
            headers: BTreeMap::new(),
            expires: Duration::from_secs(10),
            now: "2019-02-01T09:00:00Z".parse().unwrap(),
        };
        let c = canonical(
            "https://storage.googleapis.com",
            "test-iam-credentials@dummy-project-id.iam.gserviceaccount.com",
            &request,
        );
        assert_eq!(
            c.to_sign(),
            "GOOG4-RSA-SHA256\n20190201T090000Z\n20190201/auto/storage/goog4_request\n\
             00e2fb794ea93d7adb703edaebdd509821fcc7d4f1a79ac5c8d2b394df109320"
        );
        assert!(
            c.resource
                .starts_with("https://storage.googleapis.com/test-bucket/test-object")
        );
    }

    #[test]
    fn object_names_and_header_values_are_canonical() {
        let request = UrlRequest {
            method: "PUT".into(),
            bucket: "b".into(),
            object: "originals/a b/ü".into(),
            headers: BTreeMap::from([("Content-Type".into(), " image/jpeg  x ".into())]),
            expires: Duration::from_secs(30 * 86_400),
            now: "2026-01-02T03:04:05Z".parse().unwrap(),
        };
        let c = canonical("http://127.0.0.1:4443", "e@x", &request);
        assert_eq!(c.resource, "http://127.0.0.1:4443/b/originals/a%20b/%C3%BC");
        assert!(
            c.request
                .contains("\ncontent-type:image/jpeg x\nhost:127.0.0.1:4443\n")
        );
        assert!(
            c.query.contains("X-Goog-Expires=604800"),
            "capped at 7 days"
        );
        assert!(c.query.contains("X-Goog-SignedHeaders=content-type%3Bhost"));
    }
}
