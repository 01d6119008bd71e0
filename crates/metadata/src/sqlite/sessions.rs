//! [`SessionStore`] on SQLite: a row per session holding its JSON, keyed by its token's hash.

use async_trait::async_trait;
use imagelake_core::{KeyId, Timestamp, clock::to_micros, records::Session};
use rusqlite::params;
use uuid::Uuid;

use crate::{Result, SessionStore};

use super::{SqliteStore, backend};

#[async_trait]
impl SessionStore for SqliteStore {
    async fn put_session(&self, session: &Session) -> Result<()> {
        let body = serde_json::to_string(session).map_err(backend)?;
        let session = session.clone();
        self.call(move |conn| {
            conn.execute(
                "INSERT INTO sessions (token_hash, id, key_id, expires_at, body)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    session.token_hash,
                    session.id.to_string(),
                    session.key_id.to_string(),
                    to_micros(session.expires_at),
                    body
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn find_session(&self, token_hash: &str) -> Result<Option<Session>> {
        let token_hash = token_hash.to_owned();
        let found = self
            .bodies(
                "SELECT body FROM sessions WHERE token_hash = ?1",
                vec![token_hash.into()],
            )
            .await?;
        Ok(found.into_iter().next())
    }

    async fn key_sessions(&self, key: KeyId) -> Result<Vec<Session>> {
        self.bodies(
            "SELECT body FROM sessions WHERE key_id = ?1 ORDER BY id DESC",
            vec![key.to_string().into()],
        )
        .await
    }

    async fn end_session(&self, key: KeyId, id: Uuid) -> Result<bool> {
        self.call(move |conn| {
            let ended = conn.execute(
                "DELETE FROM sessions WHERE key_id = ?1 AND id = ?2",
                params![key.to_string(), id.to_string()],
            )?;
            Ok(ended > 0)
        })
        .await
    }

    async fn purge_sessions(&self, before: Timestamp) -> Result<u64> {
        self.call(move |conn| {
            let purged = conn.execute(
                "DELETE FROM sessions WHERE expires_at < ?1",
                [to_micros(before)],
            )?;
            Ok(purged as u64)
        })
        .await
    }
}
