//! The room upload bodies may take in memory: `limits.max_inflight_upload_bytes` in all, and at
//! most `limits.max_inflight_upload_bytes_per_key` for any one API key.
//!
//! An upload reserves its declared size (or the body limit, when it declares none) before its
//! body is read, so the bodies held at once never exceed the budget however many clients send.
//! The share per key is what keeps one customer's slow or stalled uploads from holding the whole
//! budget: its further uploads queue behind its own share while other keys' uploads go on. A
//! stalled body gives its room back when the body times out (see `connections`). No upload
//! waits for room longer than a bound: then it is answered `429` (its own key's uploads hold the
//! share) or `503` (the whole budget is taken), with `Retry-After`, so queued connections never
//! pile up behind slow ones.
//!
//! [`DecodeBudget`] is the same idea for the workers: each decode reserves what the imaging
//! crate says it will allocate at most (`Inspection::decode_bytes`), so a large image waits for
//! room instead of running beside another large one.
//!
//! Room is counted in MiB so the semaphores' permit counts stay small.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use imagelake_core::KeyId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::settings::Limits;

/// Upload room: one semaphore for the whole budget, one per key that is uploading.
pub struct UploadBudget {
    total: Arc<Semaphore>,
    per_key_mib: usize,
    keys: Mutex<HashMap<KeyId, Weak<Semaphore>>>,
}

/// Why an upload found no room in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// The key's own uploads hold its share.
    Key,
    /// Uploads of all keys hold the whole budget.
    Total,
}

/// Room held for one upload body; given back when dropped.
pub struct Reservation {
    _key: OwnedSemaphorePermit,
    _total: OwnedSemaphorePermit,
}

impl UploadBudget {
    pub fn new(limits: &Limits) -> Self {
        // Never smaller than one maximal body, so every upload can proceed.
        let total = limits.max_inflight_upload_bytes.max(limits.max_body_bytes);
        let per_key = limits.per_key_upload_bytes().min(total);
        Self {
            total: Arc::new(Semaphore::new(mib(total))),
            per_key_mib: mib(per_key),
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// Waits, at most `wait`, until `bytes` fit within `key`'s share and within the whole
    /// budget.
    pub async fn reserve(
        &self,
        key: KeyId,
        bytes: u64,
        wait: Duration,
    ) -> Result<Reservation, Busy> {
        let want = u32::try_from(mib(bytes).clamp(1, self.per_key_mib)).unwrap_or(u32::MAX);
        let share = self.share(key);
        let deadline = tokio::time::Instant::now() + wait;
        // The key's own share first: a key that waits for itself holds nothing of the total.
        let key_permit = tokio::time::timeout_at(deadline, share.acquire_many_owned(want))
            .await
            .map_err(|_| Busy::Key)?
            .expect("upload budget semaphores are never closed");
        let total = Arc::clone(&self.total).acquire_many_owned(want);
        let total_permit = tokio::time::timeout_at(deadline, total)
            .await
            .map_err(|_| Busy::Total)?
            .expect("upload budget semaphores are never closed");
        Ok(Reservation {
            _key: key_permit,
            _total: total_permit,
        })
    }

    fn share(&self, key: KeyId) -> Arc<Semaphore> {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(share) = keys.get(&key).and_then(Weak::upgrade) {
            return share;
        }
        if keys.len() >= 1024 {
            // Shares nobody holds carry no state.
            keys.retain(|_, share| share.strong_count() > 0);
        }
        let share = Arc::new(Semaphore::new(self.per_key_mib));
        keys.insert(key, Arc::downgrade(&share));
        share
    }

    /// MiB of the whole budget not reserved now.
    pub fn available_mib(&self) -> usize {
        self.total.available_permits()
    }
}

/// Memory for decoding images, shared by the workers of a process.
pub struct DecodeBudget {
    room: Arc<Semaphore>,
    bytes: u64,
}

impl DecodeBudget {
    pub fn new(bytes: u64) -> Self {
        Self {
            room: Arc::new(Semaphore::new(mib(bytes))),
            bytes,
        }
    }

    /// The whole budget in bytes: what a single decode may need at most.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Waits for `bytes` of room; `None` when they exceed the whole budget and never fit.
    pub async fn reserve(&self, bytes: u64) -> Option<OwnedSemaphorePermit> {
        let want = mib(bytes);
        if want > self.room_mib() {
            return None;
        }
        let want = u32::try_from(want).ok()?;
        Arc::clone(&self.room).acquire_many_owned(want).await.ok()
    }

    fn room_mib(&self) -> usize {
        mib(self.bytes)
    }
}

fn mib(bytes: u64) -> usize {
    usize::try_from(bytes.div_ceil(1 << 20).max(1))
        .unwrap_or(Semaphore::MAX_PERMITS)
        .min(Semaphore::MAX_PERMITS)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limits(total_mib: u64, per_key_mib: Option<u64>) -> Limits {
        Limits {
            max_body_bytes: 10 << 20,
            max_inflight_upload_bytes: total_mib << 20,
            max_inflight_upload_bytes_per_key: per_key_mib.map(|m| m << 20),
            ..Limits::default()
        }
    }

    #[tokio::test]
    async fn one_key_cannot_hold_the_whole_budget() {
        let budget = UploadBudget::new(&limits(100, None));
        let (greedy, other) = (KeyId::new(), KeyId::new());
        let wait = Duration::from_millis(50);
        let held = budget.reserve(greedy, 25 << 20, wait).await.unwrap();
        assert_eq!(budget.available_mib(), 75);
        // The greedy key's next upload waits for its own share, then gives up ...
        assert_eq!(budget.reserve(greedy, 1, wait).await.err(), Some(Busy::Key));
        // ... while another key's upload gets room at once.
        let _small = budget.reserve(other, 2048, wait).await.unwrap();
        drop(held);
        let _again = budget.reserve(greedy, 1, wait).await.unwrap();
        let keys: Vec<KeyId> = (0..3).map(|_| KeyId::new()).collect();
        let _held: Vec<Reservation> =
            futures::future::join_all(keys.iter().map(|k| budget.reserve(*k, 25 << 20, wait)))
                .await
                .into_iter()
                .map(Result::unwrap)
                .collect();
        assert_eq!(
            budget.reserve(KeyId::new(), 25 << 20, wait).await.err(),
            Some(Busy::Total),
            "the whole budget is taken"
        );
    }

    #[tokio::test]
    async fn a_large_decode_waits_and_a_huge_one_never_fits() {
        let budget = DecodeBudget::new(100 << 20);
        assert!(budget.reserve(101 << 20).await.is_none());
        let large = budget.reserve(80 << 20).await.unwrap();
        let second = tokio::time::timeout(Duration::from_millis(50), budget.reserve(40 << 20));
        assert!(second.await.is_err(), "waits for room");
        let _small = budget.reserve(10 << 20).await.unwrap();
        drop(large);
        let _now = budget.reserve(40 << 20).await.unwrap();
    }

    #[tokio::test]
    async fn the_share_is_never_below_one_body() {
        let budget = UploadBudget::new(&limits(20, Some(1)));
        assert_eq!(budget.per_key_mib, 10);
        let _whole_body = budget
            .reserve(KeyId::new(), 10 << 20, Duration::from_millis(50))
            .await
            .unwrap();
    }
}
