//! Browser sessions ([`SessionStore`]): what a key was exchanged for at sign-in, kept by every
//! metadata backend so any `api` replica answers a request of a session another one opened.

use async_trait::async_trait;
use imagelake_core::{KeyId, Timestamp, records::Session};
use uuid::Uuid;

use crate::Result;

/// Sessions by the hash of their token, listed under the key they came from.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Writes a new session.
    async fn put_session(&self, session: &Session) -> Result<()>;
    /// The session whose token hashes to `token_hash`, expired or not.
    async fn find_session(&self, token_hash: &str) -> Result<Option<Session>>;
    /// The sessions opened with `key`, newest first.
    async fn key_sessions(&self, key: KeyId) -> Result<Vec<Session>>;
    /// Ends the session `id` of `key`; whether there was one.
    async fn end_session(&self, key: KeyId, id: Uuid) -> Result<bool>;
    /// Forgets sessions that expired before `before`; returns how many.
    async fn purge_sessions(&self, before: Timestamp) -> Result<u64>;
}
