//! Who logs in: user = the key id (or `admin` for the admin token), password = the key.
//!
//! The method is chosen when the startup message names the user:
//! - without TLS, always SCRAM-SHA-256, checked against the verifier stored when the key was
//!   issued (RFC 5802 and 7677; the server proves it holds the verifier too). A user that does
//!   not exist, or a key issued before the wire had verifiers, goes through the same exchange
//!   with a made-up salt and fails at its end, so the answer never tells which;
//! - over TLS, what `sql.pg_auth` names: SCRAM, or MD5 or cleartext for clients without SCRAM.
//!   Keys without wire secrets log in over TLS with cleartext (checked against the key's
//!   SHA-256), until they are rotated.
//!
//! Failed logins count against the client address's budget of failed authentications, shared
//! with the HTTP door (`limits.auth_failures_per_second`).

use std::{fmt::Debug, sync::Arc};

use async_trait::async_trait;
use base64::{Engine, engine::general_purpose::STANDARD};
use futures::{Sink, SinkExt};
use imagelake_core::{
    KeyId,
    records::{AnyKey, WireSecrets},
};
use imagelake_runtime::keys::{ADMIN_USER, AuthAttempt, ScramVerifier, hash_secret, same_bytes};
use imagelake_sql::{Asker, Viewer};
use pgwire::{
    api::{
        ClientInfo, METADATA_USER, PgWireConnectionState, PidSecretKeyGenerator,
        auth::{
            DefaultServerParameterProvider, StartupHandler, finish_authentication,
            protocol_negotiation, save_startup_parameters_to_metadata,
        },
    },
    error::{ErrorInfo, PgWireError, PgWireResult},
    messages::{PgWireBackendMessage, PgWireFrontendMessage, startup::Authentication},
};
use ring::{digest, hmac, rand::SecureRandom};
use tokio::sync::Mutex;

use crate::{Door, functions::SERVER_VERSION};

const SCRAM_SHA_256: &str = "SCRAM-SHA-256";

/// A connection's login, from its startup message to `AuthenticationOk`.
pub struct Login {
    door: Arc<Door>,
    step: Mutex<Step>,
    /// Set once the client is logged in; the connection's task waits on `ended` otherwise.
    admitted: std::sync::atomic::AtomicBool,
    /// Woken when the login was refused, so the connection ends at once.
    pub ended: tokio::sync::Notify,
}

/// How long a client may take to log in before its connection is dropped.
pub const LOGIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Who a user name turned out to be, before the password is checked.
struct Candidate {
    /// The login's payment from the address's budget of failed authentications; the key's
    /// SHA-256 (for cleartext) when there is a key.
    attempt: AuthAttempt,
    asker: Option<Asker>,
    /// Why a found key may still not query (an ingest key), said only after a good password.
    refusal: Option<String>,
    wire: Option<WireSecrets>,
}

enum Step {
    Started,
    /// The client was asked for its SCRAM first message.
    ScramStarted(Candidate),
    /// Our first message is out; the client's proof comes next.
    ScramChallenged {
        candidate: Candidate,
        verifier: Option<ScramVerifier>,
        /// client-first-message-bare and server-first-message, for the AuthMessage.
        client_first: String,
        server_first: String,
        nonce: String,
        gs2_header: String,
    },
    Md5 {
        candidate: Candidate,
        salt: [u8; 4],
    },
    Cleartext(Candidate),
    Done,
}

impl Login {
    pub fn new(door: Arc<Door>) -> Self {
        Self {
            door,
            step: Mutex::new(Step::Started),
            admitted: std::sync::atomic::AtomicBool::new(false),
            ended: tokio::sync::Notify::new(),
        }
    }

    /// Resolves when the connection must end for want of a login: refused, or not logged in
    /// within [`LOGIN_TIMEOUT`]; never once logged in. (pgwire keeps reading a connection whose
    /// login failed, so a silent client would otherwise hold its slot.)
    pub async fn unfinished(&self) {
        let _ = tokio::time::timeout(LOGIN_TIMEOUT, self.ended.notified()).await;
        if self.admitted.load(std::sync::atomic::Ordering::Acquire) {
            std::future::pending::<()>().await;
        }
    }

    /// Who `user`, logging in from `address`, is: the admin, a live key with its secrets, or
    /// nobody.
    async fn candidate(&self, user: &str, address: String) -> PgWireResult<Candidate> {
        let known = &self.door.state.known_keys;
        if user == ADMIN_USER {
            return Ok(Candidate {
                attempt: AuthAttempt::new(known, address, None),
                asker: Some(asker(Viewer::Admin, ADMIN_USER.to_owned())),
                refusal: None,
                wire: Some(self.door.state.admin.wire().clone()),
            });
        }
        let nobody = |address| Candidate {
            attempt: AuthAttempt::new(known, address, None),
            asker: None,
            refusal: None,
            wire: None,
        };
        let Ok(id) = user.parse::<KeyId>() else {
            return Ok(nobody(address));
        };
        let found = self
            .door
            .state
            .store
            .find_key_by_id(id)
            .await
            .map_err(|e| fatal("08006", format!("the key store did not answer: {e}")))?;
        let Some(key) = found else {
            return Ok(nobody(address));
        };
        let (viewer, refusal) = match &key {
            AnyKey::Customer(k) => (Viewer::Customer(k.customer_id), None),
            AnyKey::Service(k) => (Viewer::Analyst, k.role.may_query().err()),
        };
        Ok(Candidate {
            attempt: AuthAttempt::naming(known, address, key.hash()),
            asker: Some(asker(viewer, id.to_string())),
            refusal,
            wire: key.wire().cloned(),
        })
    }

    /// The method for this candidate on this connection, asked of the client.
    async fn ask<C>(&self, client: &mut C, candidate: Candidate) -> PgWireResult<Step>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        use imagelake_runtime::settings::PgAuth;
        let secure = client.is_secure();
        let method = match (secure, self.door.state.settings.sql.pg_auth) {
            (false, _) => PgAuth::ScramSha256,
            // Keys from before the wire had secrets: cleartext, over TLS only.
            (true, _) if candidate.asker.is_some() && candidate.wire.is_none() => PgAuth::Password,
            (true, method) => method,
        };
        let (message, step) = match method {
            PgAuth::ScramSha256 => (
                Authentication::SASL(vec![SCRAM_SHA_256.to_owned()]),
                Step::ScramStarted(candidate),
            ),
            PgAuth::Md5 => {
                let salt = random::<4>();
                (
                    Authentication::MD5Password(salt.to_vec()),
                    Step::Md5 { candidate, salt },
                )
            }
            PgAuth::Password => (
                Authentication::CleartextPassword,
                Step::Cleartext(candidate),
            ),
        };
        client
            .send(PgWireBackendMessage::Authentication(message))
            .await?;
        Ok(step)
    }

    /// Logs the client in as `candidate`'s asker, or refuses it.
    async fn admit<C>(
        &self,
        client: &mut C,
        candidate: Candidate,
        passed: bool,
        then: Option<Authentication>,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let user = client
            .metadata()
            .get(METADATA_USER)
            .cloned()
            .unwrap_or_default();
        let address = client.socket_addr().ip().to_string();
        let Some(asker) = candidate.asker.filter(|_| passed) else {
            tracing::info!(%user, %address, "PostgreSQL login refused: bad password");
            let state = &self.door.state;
            candidate
                .attempt
                .failed(&state.auth_failures, &state.known_keys, state.clock.now());
            // PostgreSQL's own words, which clients and tools match on.
            let message = format!("password authentication failed for user \"{user}\"");
            return refuse(self, client, "28P01", message).await;
        };
        let state = &self.door.state;
        candidate
            .attempt
            .succeeded(&state.auth_failures, &state.known_keys);
        if let Some(refusal) = candidate.refusal {
            return refuse(self, client, "42501", refusal).await;
        }
        if let Some(last) = then {
            client
                .send(PgWireBackendMessage::Authentication(last))
                .await?;
        }
        let (pid, secret) = self.door.pids.generate(&*client);
        client.set_pid_and_secret_key(pid, secret.clone());
        let (handle, guard) = self.door.connections.register(pid, secret);
        client.session_extensions().insert(handle);
        client.session_extensions().insert(guard);
        tracing::info!(key_id = %asker.key, %address, secure = client.is_secure(), "PostgreSQL login");
        client.session_extensions().insert(asker);
        client
            .session_extensions()
            .insert(Checked(std::sync::Mutex::new(std::time::Instant::now())));
        self.admitted
            .store(true, std::sync::atomic::Ordering::Release);
        finish_authentication(client, &parameters()).await
    }
}

/// What the server says of itself at login.
fn parameters() -> DefaultServerParameterProvider {
    let mut parameters = DefaultServerParameterProvider::default();
    parameters.server_version = format!("{SERVER_VERSION} (imagelake)");
    parameters.is_superuser = false;
    parameters.default_transaction_read_only = true;
    parameters
}

fn asker(viewer: Viewer, key: String) -> Asker {
    Asker {
        viewer,
        key,
        door: "pg",
    }
}

#[async_trait]
impl StartupHandler for Login {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut step = self.step.lock().await;
        match (std::mem::replace(&mut *step, Step::Done), message) {
            (Step::Started, PgWireFrontendMessage::Startup(startup)) => {
                protocol_negotiation(client, &startup).await?;
                save_startup_parameters_to_metadata(client, &startup);
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                let user = client
                    .metadata()
                    .get(METADATA_USER)
                    .cloned()
                    .unwrap_or_default();
                // As at the HTTP door: a key that worked lately is never turned away; anyone
                // else spends the address's budget of failed authentications.
                let address = client.socket_addr().ip().to_string();
                let candidate = self.candidate(&user, address).await?;
                let state = &self.door.state;
                if candidate
                    .attempt
                    .pay(&state.auth_failures, state.clock.now())
                    .is_err()
                {
                    let message = "too many failed logins from this address; try again in a moment";
                    return refuse(self, client, "53300", message.to_owned()).await;
                }
                *step = self.ask(client, candidate).await?;
            }
            (Step::ScramStarted(candidate), PgWireFrontendMessage::PasswordMessageFamily(m)) => {
                let first = m.into_sasl_initial_response()?;
                if first.auth_method != SCRAM_SHA_256 {
                    return Err(PgWireError::UnsupportedSASLAuthMethod(first.auth_method));
                }
                let data = first.data.unwrap_or_default();
                let (gs2_header, client_first) = split_client_first(&data)?;
                let client_nonce = attribute(&client_first, 'r')?;
                let verifier = candidate
                    .wire
                    .as_ref()
                    .and_then(|w| ScramVerifier::parse(&w.scram));
                let (salt, iterations) = verifier.as_ref().map_or_else(
                    || {
                        (
                            self.door.mock_salt(
                                &client
                                    .metadata()
                                    .get(METADATA_USER)
                                    .cloned()
                                    .unwrap_or_default(),
                            ),
                            4096,
                        )
                    },
                    |v| (v.salt.clone(), v.iterations),
                );
                let nonce = format!("{client_nonce}{}", STANDARD.encode(random::<18>()));
                let server_first = format!("r={nonce},s={},i={iterations}", STANDARD.encode(&salt));
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::SASLContinue(server_first.clone().into_bytes().into()),
                    ))
                    .await?;
                *step = Step::ScramChallenged {
                    candidate,
                    verifier,
                    client_first,
                    server_first,
                    nonce,
                    gs2_header,
                };
            }
            (
                Step::ScramChallenged {
                    candidate,
                    verifier,
                    client_first,
                    server_first,
                    nonce,
                    gs2_header,
                },
                PgWireFrontendMessage::PasswordMessageFamily(m),
            ) => {
                let last = m.into_sasl_response()?;
                let last = std::str::from_utf8(&last.data)
                    .map_err(|_| protocol("the SCRAM message is not UTF-8"))?;
                let (without_proof, proof) = last
                    .rsplit_once(",p=")
                    .ok_or_else(|| protocol("the SCRAM message has no proof"))?;
                let binding = attribute(without_proof, 'c')?;
                if STANDARD.decode(binding).ok().as_deref() != Some(gs2_header.as_bytes())
                    || attribute(without_proof, 'r')? != nonce
                {
                    return Err(protocol(
                        "the SCRAM message does not continue this exchange",
                    ));
                }
                let auth_message = format!("{client_first},{server_first},{without_proof}");
                let proof = STANDARD
                    .decode(proof)
                    .map_err(|_| protocol("the SCRAM proof is not base64"))?;
                let signature = verifier
                    .as_ref()
                    .filter(|v| proves(v, &auth_message, &proof))
                    .map(|v| server_signature(v, &auth_message));
                let passed = signature.is_some();
                let last = signature.map(|s| {
                    Authentication::SASLFinal(
                        format!("v={}", STANDARD.encode(s)).into_bytes().into(),
                    )
                });
                self.admit(client, candidate, passed, last).await?;
            }
            (Step::Md5 { candidate, salt }, PgWireFrontendMessage::PasswordMessageFamily(m)) => {
                let given = m.into_password()?.password;
                let passed = candidate.wire.as_ref().is_some_and(|w| {
                    same_bytes(md5_reply(&w.md5, &salt).as_bytes(), given.as_bytes())
                });
                self.admit(client, candidate, passed, None).await?;
            }
            (Step::Cleartext(candidate), PgWireFrontendMessage::PasswordMessageFamily(m)) => {
                let given = hash_secret(&m.into_password()?.password);
                let passed = match (&candidate.asker, candidate.attempt.hash()) {
                    (Some(a), _) if a.viewer == Viewer::Admin => {
                        self.door.state.admin.matches(&given)
                    }
                    (Some(_), Some(hash)) => same_bytes(hash.as_bytes(), given.as_bytes()),
                    _ => false,
                };
                self.admit(client, candidate, passed, None).await?;
            }
            (_, other) => {
                return Err(protocol(format!(
                    "unexpected message during login: {other:?}"
                )));
            }
        }
        Ok(())
    }
}

/// Whether `proof` shows the client knows the key behind `verifier` (RFC 5802: the client key
/// is the proof XOR the client signature, and its SHA-256 must be the stored key).
fn proves(verifier: &ScramVerifier, auth_message: &str, proof: &[u8]) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, &verifier.stored_key);
    let signature = hmac::sign(&key, auth_message.as_bytes());
    if proof.len() != signature.as_ref().len() {
        return false;
    }
    let client_key: Vec<u8> = proof
        .iter()
        .zip(signature.as_ref())
        .map(|(p, s)| p ^ s)
        .collect();
    let stored = digest::digest(&digest::SHA256, &client_key);
    same_bytes(stored.as_ref(), &verifier.stored_key)
}

/// The server's proof that it holds the verifier.
fn server_signature(verifier: &ScramVerifier, auth_message: &str) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, &verifier.server_key);
    hmac::sign(&key, auth_message.as_bytes()).as_ref().to_vec()
}

/// What an MD5 client sends: `md5` and the hex MD5 of the stored hash's hex digits, then the
/// salt.
fn md5_reply(stored: &str, salt: &[u8; 4]) -> String {
    use md5::{Digest as _, Md5};
    let mut hasher = Md5::new();
    hasher.update(stored.trim_start_matches("md5").as_bytes());
    hasher.update(salt);
    format!("md5{}", hex::encode(hasher.finalize()))
}

/// The GS2 header (`n,,` or `y,,`: no channel binding) and the client-first-message-bare.
fn split_client_first(data: &[u8]) -> PgWireResult<(String, String)> {
    let text = std::str::from_utf8(data).map_err(|_| protocol("the SCRAM message is not UTF-8"))?;
    let mut parts = text.splitn(3, ',');
    let (Some(binding), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(protocol("the SCRAM first message is malformed"));
    };
    if binding != "n" && binding != "y" {
        return Err(protocol(
            "channel binding is not offered here; use SCRAM-SHA-256",
        ));
    }
    Ok((format!("{binding},{authzid},"), bare.to_owned()))
}

/// The value of attribute `name` in a SCRAM message.
fn attribute(message: &str, name: char) -> PgWireResult<&str> {
    message
        .split(',')
        .find_map(|part| part.strip_prefix(name)?.strip_prefix('='))
        .ok_or_else(|| protocol(format!("the SCRAM message has no {name}= attribute")))
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The system's generator only fails where nothing could run.
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    bytes
}

/// Ends a login with a `FATAL` error, as PostgreSQL does: the error, then the connection
/// closed (no `ReadyForQuery`, which pgwire would add to an error returned from the login).
async fn refuse<C>(login: &Login, client: &mut C, code: &str, message: String) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let info = ErrorInfo::new("FATAL".to_owned(), code.to_owned(), message);
    client
        .send(PgWireBackendMessage::ErrorResponse(info.into()))
        .await?;
    let _ = client.close().await;
    login.ended.notify_one();
    Err(PgWireError::IoError(std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "login refused",
    )))
}

/// When the connection's key was last found live in the store.
pub struct Checked(pub std::sync::Mutex<std::time::Instant>);

/// How long a connection goes on on a key before it is looked up again: a revoked key's open
/// connections end within this.
pub const RECHECK: std::time::Duration = std::time::Duration::from_secs(10);

fn fatal(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".to_owned(),
        code.to_owned(),
        message.into(),
    )))
}

fn protocol(message: impl Into<String>) -> PgWireError {
    fatal("08P01", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's exchange (user `user`, password `pencil`), checked from the server's side.
    #[test]
    fn the_rfc_exchange_passes_and_a_wrong_proof_fails() {
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let verifier = ScramVerifier::new("pencil", &salt, 4096);
        let client_first = "n=user,r=rOprNGfwEbeRWgbNEkqO";
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let without_proof = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let auth = format!("{client_first},{server_first},{without_proof}");
        let proof = STANDARD
            .decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        assert!(proves(&verifier, &auth, &proof));
        assert_eq!(
            STANDARD.encode(server_signature(&verifier, &auth)),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        let mut wrong = proof.clone();
        wrong[0] ^= 1;
        assert!(!proves(&verifier, &auth, &wrong));
        assert!(!proves(&verifier, &auth, &proof[..31]));
    }

    #[test]
    fn client_first_messages_are_read_or_refused() {
        let (header, bare) = split_client_first(b"n,,n=,r=abc").unwrap();
        assert_eq!((header.as_str(), bare.as_str()), ("n,,", "n=,r=abc"));
        assert_eq!(attribute(&bare, 'r').unwrap(), "abc");
        assert!(split_client_first(b"p=tls-server-end-point,,n=,r=x").is_err());
        assert!(split_client_first(b"garbage").is_err());
        assert!(attribute("n=,x=1", 'r').is_err());
    }

    /// PostgreSQL's MD5 exchange for user alice, password secret, salt 01020304.
    #[test]
    fn md5_replies_are_postgres_ones() {
        let stored = imagelake_runtime::keys::md5_hash("alice", "secret");
        // What libpq sends: md5(md5(password || user) in hex || salt), in hex after "md5".
        assert_eq!(
            md5_reply(&stored, &[1, 2, 3, 4]),
            "md598a0412b9c31436fc53776e863350083"
        );
    }
}
