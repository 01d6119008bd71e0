//! Where OAuth access tokens for Google APIs come from.
//!
//! On GKE with Workload Identity (and on any Google VM) the metadata server hands out tokens for
//! the attached service account; elsewhere a service-account key file named by
//! `GOOGLE_APPLICATION_CREDENTIALS` signs its own tokens (self-signed JWTs, no token exchange);
//! emulators take none. Tokens are cached until a minute before they expire.

use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::{
    error::{Error, Result},
    signing::ServiceAccountKey,
};

const METADATA_TOKEN_URL: &str =
    "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token";

#[derive(Debug)]
pub enum TokenSource {
    /// No `Authorization` header: the emulators.
    Anonymous,
    /// A fixed bearer token (for example from `gcloud auth print-access-token`).
    Static(String),
    /// The instance metadata server (GKE Workload Identity, Compute Engine, Cloud Run).
    MetadataServer(Mutex<Option<(String, Instant)>>),
    /// Self-signed JWTs from a service-account key.
    ServiceAccount(Box<ServiceAccountKey>, Mutex<Option<(String, Instant)>>),
}

const METADATA: &str = "the metadata server";

/// The scope every imagelake backend needs.
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

impl TokenSource {
    pub fn metadata_server() -> Self {
        Self::MetadataServer(Mutex::new(None))
    }

    /// Google's application default credentials, as far as a server needs them: the key file
    /// named by `GOOGLE_APPLICATION_CREDENTIALS` when set, the metadata server otherwise.
    pub fn application_default() -> Result<Self> {
        match std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS") {
            Some(path) if !path.is_empty() => Ok(Self::ServiceAccount(
                Box::new(ServiceAccountKey::from_file(std::path::Path::new(&path))?),
                Mutex::new(None),
            )),
            _ => Ok(Self::metadata_server()),
        }
    }

    /// The bearer token to send, if any.
    pub async fn token(&self, client: &reqwest::Client) -> Result<Option<String>> {
        match self {
            Self::Anonymous => Ok(None),
            Self::Static(token) => Ok(Some(token.clone())),
            Self::MetadataServer(cache) => cached(cache, fetch_metadata_token(client)).await,
            Self::ServiceAccount(key, cache) => {
                let mint = async {
                    let token = key.access_token(SCOPE, chrono::Utc::now())?;
                    Ok((token, Duration::from_secs(3600)))
                };
                cached(cache, mint).await
            }
        }
    }
}

/// The cached token while it has more than a minute left, or a new one from `fetch` (which
/// only runs when needed).
async fn cached(
    cache: &Mutex<Option<(String, Instant)>>,
    fetch: impl Future<Output = Result<(String, Duration)>>,
) -> Result<Option<String>> {
    let mut cached = cache.lock().await;
    if let Some((token, until)) = cached.as_ref()
        && Instant::now() < *until
    {
        return Ok(Some(token.clone()));
    }
    let (token, lifetime) = fetch.await?;
    let until = Instant::now() + lifetime.saturating_sub(Duration::from_secs(60));
    *cached = Some((token.clone(), until));
    Ok(Some(token))
}

async fn fetch_metadata_token(client: &reqwest::Client) -> Result<(String, Duration)> {
    #[derive(serde::Deserialize)]
    struct Token {
        access_token: String,
        expires_in: u64,
    }
    let response = client
        .get(METADATA_TOKEN_URL)
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .map_err(|e| Error::unreachable(METADATA, e))?;
    if !response.status().is_success() {
        return Err(Error::from_status(
            METADATA,
            response.status(),
            "an access token",
            "",
        ));
    }
    let token: Token = response
        .json()
        .await
        .map_err(|e| Error::malformed("access token from the metadata server", e))?;
    Ok((token.access_token, Duration::from_secs(token.expires_in)))
}

/// Where a Google API is reached and with which credentials: the emulator named by
/// `emulator_var` (Google's own convention, `host:port` or a URL) without credentials, or
/// `production` with application default credentials.
pub(crate) fn endpoint_from_env(
    emulator_var: &str,
    production: &str,
) -> Result<(String, TokenSource)> {
    Ok(match std::env::var(emulator_var) {
        Ok(host) if !host.is_empty() => {
            let endpoint = if host.contains("://") {
                host
            } else {
                format!("http://{host}")
            };
            (endpoint, TokenSource::Anonymous)
        }
        _ => (production.to_owned(), TokenSource::application_default()?),
    })
}
