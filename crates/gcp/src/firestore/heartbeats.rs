//! [`HeartbeatStore`] on Firestore: `heartbeats/{process}`, holding the heartbeat as JSON
//! (`body`) beside the time it is purged by.

use async_trait::async_trait;
use imagelake_core::{Timestamp, records::Heartbeat};
use imagelake_metadata::{HeartbeatStore, Result};
use serde_json::json;

use super::{
    FirestoreStore, backend,
    client::compare,
    runs::bodies,
    values::{string, ts},
};

const HEARTBEATS: &str = "heartbeats";

#[async_trait]
impl HeartbeatStore for FirestoreStore {
    async fn put_heartbeat(&self, beat: &Heartbeat) -> Result<()> {
        let fields = json!({
            "role": string(&beat.role),
            "beat_at": ts(beat.beat_at),
            "body": string(&serde_json::to_string(beat).map_err(backend)?),
        });
        let write = self.upsert(HEARTBEATS, &beat.process, fields);
        self.commit_all(vec![write]).await
    }

    async fn heartbeats(&self) -> Result<Vec<Heartbeat>> {
        let query = json!({"from": [{"collectionId": HEARTBEATS}]});
        let mut beats: Vec<Heartbeat> = bodies(&self.query(query).await?)?;
        beats.sort_by(|a, b| (&a.role, &a.process).cmp(&(&b.role, &b.process)));
        Ok(beats)
    }

    async fn purge_heartbeats(&self, before: Timestamp) -> Result<u64> {
        self.delete_where(HEARTBEATS, compare("beat_at", "LESS_THAN", ts(before)))
            .await
    }
}
