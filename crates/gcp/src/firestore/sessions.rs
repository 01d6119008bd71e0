//! [`SessionStore`] on Firestore: `sessions/{token hash}`, holding the session as JSON (`body`)
//! beside the fields it is queried by. The composite index `key_sessions` needs is in
//! `deploy/firestore.indexes.json`.

use async_trait::async_trait;
use imagelake_core::{KeyId, Timestamp, records::Session};
use imagelake_metadata::{Result, SessionStore};
use serde_json::json;
use uuid::Uuid;

use super::{
    FirestoreStore, backend,
    client::{all_of, compare, equal, order},
    runs::{bodies, body},
    values::{string, ts},
};

const SESSIONS: &str = "sessions";

#[async_trait]
impl SessionStore for FirestoreStore {
    async fn put_session(&self, session: &Session) -> Result<()> {
        let fields = json!({
            "id": string(&session.id.to_string()),
            "key_id": string(&session.key_id.to_string()),
            "expires_at": ts(session.expires_at),
            "body": string(&serde_json::to_string(session).map_err(backend)?),
        });
        let write = self.upsert(SESSIONS, &session.token_hash, fields);
        self.commit_all(vec![write]).await
    }

    async fn find_session(&self, token_hash: &str) -> Result<Option<Session>> {
        self.get(SESSIONS, token_hash)
            .await?
            .as_ref()
            .map(body)
            .transpose()
    }

    async fn key_sessions(&self, key: KeyId) -> Result<Vec<Session>> {
        let query = json!({
            "from": [{"collectionId": SESSIONS}],
            "where": equal("key_id", string(&key.to_string())),
            "orderBy": [order("id", "DESCENDING")],
        });
        bodies(&self.query(query).await?)
    }

    async fn end_session(&self, key: KeyId, id: Uuid) -> Result<bool> {
        let filter = all_of(vec![
            equal("key_id", string(&key.to_string())),
            equal("id", string(&id.to_string())),
        ]);
        Ok(self.delete_where(SESSIONS, filter).await? > 0)
    }

    async fn purge_sessions(&self, before: Timestamp) -> Result<u64> {
        self.delete_where(SESSIONS, compare("expires_at", "LESS_THAN", ts(before)))
            .await
    }
}
