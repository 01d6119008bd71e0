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

use imagelake_core::{Timestamp, records::WireSecrets};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::{Error, ratelimit::RateLimiter, settings::Settings};

pub const KEY_PREFIX: &str = "ilk_";

/// SHA-256 of a secret, hex-encoded.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new random secret of 256 bits, as hex: a session's token or its CSRF token.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A new API key and the non-secret prefix shown beside it.
pub fn generate_key() -> (String, String) {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    let key = format!("{KEY_PREFIX}{}", hex::encode(bytes));
    let prefix = key[..12].to_owned();
    (key, prefix)
}

/// PBKDF2 rounds of a key's SCRAM verifier: PostgreSQL's default. Keys are random, so the
/// rounds protect nothing guessing could reach; they are what clients expect and pay for.
pub const SCRAM_ITERATIONS: u32 = 4096;

/// A new key's secrets for the Postgres wire, where the key id is the user name and the key
/// the password: a SCRAM-SHA-256 verifier with a random salt, and PostgreSQL's MD5 hash.
pub fn wire_secrets(user: &str, secret: &str) -> WireSecrets {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    WireSecrets {
        scram: ScramVerifier::new(secret, &salt, SCRAM_ITERATIONS).to_string(),
        md5: md5_hash(user, secret),
    }
}

/// PostgreSQL's MD5 password hash: `md5` and the hex MD5 of the password, then the user name.
pub fn md5_hash(user: &str, secret: &str) -> String {
    use md5::{Digest as _, Md5};
    let mut hasher = Md5::new();
    hasher.update(secret.as_bytes());
    hasher.update(user.as_bytes());
    format!("md5{}", hex::encode(hasher.finalize()))
}

/// A SCRAM-SHA-256 verifier (RFC 5802, 7677): what a server keeps to check a password without
/// holding it, or anything that would log in in its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

impl ScramVerifier {
    pub fn new(secret: &str, salt: &[u8], iterations: u32) -> Self {
        use ring::{digest, hmac, pbkdf2};
        let rounds =
            std::num::NonZeroU32::new(iterations.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
        let mut salted = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            rounds,
            salt,
            secret.as_bytes(),
            &mut salted,
        );
        let key = hmac::Key::new(hmac::HMAC_SHA256, &salted);
        let client_key = hmac::sign(&key, b"Client Key");
        let mut stored_key = [0u8; 32];
        stored_key.copy_from_slice(digest::digest(&digest::SHA256, client_key.as_ref()).as_ref());
        let mut server_key = [0u8; 32];
        server_key.copy_from_slice(hmac::sign(&key, b"Server Key").as_ref());
        Self {
            iterations: rounds.get(),
            salt: salt.to_vec(),
            stored_key,
            server_key,
        }
    }

    /// Reads PostgreSQL's text form, `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`
    /// (base64).
    pub fn parse(text: &str) -> Option<Self> {
        use base64::{Engine, engine::general_purpose::STANDARD};
        let rest = text.strip_prefix("SCRAM-SHA-256$")?;
        let (params, keys) = rest.split_once('$')?;
        let (iterations, salt) = params.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        Some(Self {
            iterations: iterations.parse().ok()?,
            salt: STANDARD.decode(salt).ok()?,
            stored_key: STANDARD.decode(stored).ok()?.try_into().ok()?,
            server_key: STANDARD.decode(server).ok()?.try_into().ok()?,
        })
    }
}

impl std::fmt::Display for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use base64::{Engine, engine::general_purpose::STANDARD};
        write!(
            f,
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(self.stored_key),
            STANDARD.encode(self.server_key)
        )
    }
}

/// Whether two byte strings are equal, compared without early exit.
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The admin token, held only as its hash, and as its secrets for the Postgres wire (user
/// [`ADMIN_USER`]).
#[derive(Clone)]
pub struct AdminToken {
    hash: String,
    wire: WireSecrets,
}

/// The Postgres wire's user name for the admin token.
pub const ADMIN_USER: &str = "admin";

impl AdminToken {
    pub fn from_secret(secret: &str) -> Self {
        Self {
            hash: hash_secret(secret),
            wire: wire_secrets(ADMIN_USER, secret),
        }
    }

    pub fn wire(&self) -> &WireSecrets {
        &self.wire
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
        same_bytes(self.hash.as_bytes(), hash.as_bytes())
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

/// One authentication attempt under the rule every door shares: a secret that worked lately is
/// looked up freely; any other lookup is paid for first from the client address's budget of
/// failed authentications, and the payment is given back when it succeeds.
pub struct AuthAttempt {
    client: String,
    /// The SHA-256 of the key the attempt is for, when the door knows it before checking (not
    /// for unknown users).
    hash: Option<String>,
    /// Whether `hash` is of the secret the client presented (the HTTP door: a miss means the
    /// key is gone) or of the key the client names, its password checked afterwards (the
    /// PostgreSQL wire: a miss means only that this client does not hold it).
    presented: bool,
    charged: bool,
}

impl AuthAttempt {
    /// An attempt with the secret the client presented, hashing to `hash`.
    pub fn new(known: &KnownKeys, client: String, hash: Option<&str>) -> Self {
        Self {
            charged: hash.is_none_or(|h| !known.contains(h)),
            hash: hash.map(str::to_owned),
            presented: true,
            client,
        }
    }

    /// An attempt to log in as the key hashing to `hash`, with a password not yet checked.
    pub fn naming(known: &KnownKeys, client: String, hash: &str) -> Self {
        Self {
            presented: false,
            ..Self::new(known, client, Some(hash))
        }
    }

    pub fn hash(&self) -> Option<&str> {
        self.hash.as_deref()
    }

    /// Pays for the lookup, or refuses it when the client address has spent its budget.
    pub fn pay(&self, failures: &RateLimiter, now: Timestamp) -> Result<(), Error> {
        if self.charged {
            failures.check(&self.client, now)?;
        }
        Ok(())
    }

    /// The secret was good: the payment comes back and the secret is known.
    pub fn succeeded(&self, failures: &RateLimiter, known: &KnownKeys) {
        if self.charged {
            failures.refund(&self.client);
        }
        if let Some(hash) = &self.hash {
            known.remember(hash);
        }
    }

    /// The secret was wrong or is gone (revoked). A presented secret is known no more. A wrong
    /// password for a key in use leaves the key working for its holder, and is counted now
    /// against the address's budget (so it turns away that address's other logins) but never
    /// refused: the holder could not be told from a guesser before the exchange, and a key's
    /// 192 random bits make guessing pointless.
    pub fn failed(&self, failures: &RateLimiter, known: &KnownKeys, now: Timestamp) {
        match &self.hash {
            Some(hash) if self.presented => known.forget(hash),
            _ if !self.charged => {
                // Counted, not refused: the answer is the failure either way.
                let _ = failures.check(&self.client, now);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's test vector (user `user`, password `pencil`), and PostgreSQL's MD5 form.
    #[test]
    fn wire_secrets_match_the_references() {
        use base64::{Engine, engine::general_purpose::STANDARD};
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let verifier = ScramVerifier::new("pencil", &salt, 4096);
        assert_eq!(
            verifier.to_string(),
            "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
        );
        assert_eq!(ScramVerifier::parse(&verifier.to_string()), Some(verifier));
        assert_eq!(ScramVerifier::parse("SCRAM-SHA-256$x:y$z"), None);
        // PostgreSQL's rolpassword for user alice, password secret: md5(password || user).
        assert_eq!(
            md5_hash("alice", "secret"),
            "md54a0a68b43b6cd5cf266fa02f196e2371"
        );
        let wire = wire_secrets("alice", "secret");
        assert!(ScramVerifier::parse(&wire.scram).is_some());
        assert_ne!(
            wire_secrets("alice", "secret").scram,
            wire.scram,
            "salted afresh"
        );
    }

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
    fn a_wrong_password_for_a_key_in_use_is_counted_and_forgets_nothing() {
        let (known, failures) = (KnownKeys::default(), RateLimiter::new(0.001, 2));
        let now = Timestamp::from_timestamp(1_700_000_000, 0).unwrap();
        known.remember("h");
        for _ in 0..3 {
            let attempt = AuthAttempt::naming(&known, "10.0.0.1".into(), "h");
            attempt.pay(&failures, now).unwrap();
            attempt.failed(&failures, &known, now);
        }
        assert!(known.contains("h"), "the key still works for its holder");
        let stranger = AuthAttempt::new(&known, "10.0.0.1".into(), None);
        assert!(
            stranger.pay(&failures, now).is_err(),
            "the guesses were counted"
        );
        let holder = AuthAttempt::naming(&known, "10.0.0.1".into(), "h");
        assert!(
            holder.pay(&failures, now).is_ok(),
            "a key in use is never turned away"
        );

        let presented = AuthAttempt::new(&known, "10.0.0.2".into(), Some("h"));
        presented.pay(&failures, now).unwrap();
        presented.failed(&failures, &known, now);
        assert!(
            !known.contains("h"),
            "a presented key that no lookup finds is gone"
        );
    }

    #[test]
    fn admin_token_matches_only_itself() {
        let admin = AdminToken::from_secret("s3cret");
        assert!(admin.matches(&hash_secret("s3cret")));
        assert!(!admin.matches(&hash_secret("s3cret ")));
        assert!(!admin.matches(""));
    }
}
