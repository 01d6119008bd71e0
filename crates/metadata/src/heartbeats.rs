//! Heartbeats ([`HeartbeatStore`]): each process's last word about its tasks, kept where every
//! process of every role can read it, so the console of one `api` replica shows the workers,
//! writers and consumers of every pod.

use async_trait::async_trait;
use imagelake_core::{Timestamp, records::Heartbeat};

use crate::Result;

/// One heartbeat per process, replaced by its next.
#[async_trait]
pub trait HeartbeatStore: Send + Sync + 'static {
    /// Writes `beat` over the process's previous one.
    async fn put_heartbeat(&self, beat: &Heartbeat) -> Result<()>;
    /// Every process's last heartbeat, by role then process.
    async fn heartbeats(&self) -> Result<Vec<Heartbeat>>;
    /// Forgets processes whose last beat is older than `before`; returns how many.
    async fn purge_heartbeats(&self, before: Timestamp) -> Result<u64>;
}
