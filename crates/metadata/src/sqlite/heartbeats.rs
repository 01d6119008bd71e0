//! [`HeartbeatStore`] on SQLite: a row per process holding its last heartbeat as JSON.

use async_trait::async_trait;
use imagelake_core::{Timestamp, clock::to_micros, records::Heartbeat};
use rusqlite::params;

use crate::{HeartbeatStore, Result};

use super::{SqliteStore, backend};

#[async_trait]
impl HeartbeatStore for SqliteStore {
    async fn put_heartbeat(&self, beat: &Heartbeat) -> Result<()> {
        let body = serde_json::to_string(beat).map_err(backend)?;
        let (process, role, beat_at) = (beat.process.clone(), beat.role.clone(), beat.beat_at);
        self.call(move |conn| {
            conn.execute(
                "INSERT INTO heartbeats (process, role, beat_at, body) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(process) DO UPDATE SET beat_at = excluded.beat_at, body = excluded.body",
                params![process, role, to_micros(beat_at), body],
            )?;
            Ok(())
        })
        .await
    }

    async fn heartbeats(&self) -> Result<Vec<Heartbeat>> {
        self.bodies(
            "SELECT body FROM heartbeats ORDER BY role, process",
            Vec::new(),
        )
        .await
    }

    async fn purge_heartbeats(&self, before: Timestamp) -> Result<u64> {
        self.call(move |conn| {
            let purged = conn.execute(
                "DELETE FROM heartbeats WHERE beat_at < ?1",
                [to_micros(before)],
            )?;
            Ok(purged as u64)
        })
        .await
    }
}
