//! API keys and the admin token, as stored and as recognised.
//!
//! Keys are 192 random bits (`ilk_` + 48 hex digits): far too many to guess, so one SHA-256 is a
//! sufficient at-rest hash (the approach of GitHub and Stripe tokens) and lookups stay a single
//! indexed read. Only the hash and a short prefix are stored; the key itself is shown once.
//! [`KnownKeys`] remembers which keys are in use, so the limit on failed authentications per
//! client address (in the HTTP door) never turns away a key that works.

use std::{
    collections::HashMap,
    fs,
    io::Write,
    path::Path,
    sync::Mutex,
    time::{Duration, Instant},
};

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::settings::Settings;

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

    /// Whether `hash` is the token's hash (compared without early exit).
    pub fn matches(&self, hash: &str) -> bool {
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
