//! Heartbeats ([`HeartbeatStore`](crate::HeartbeatStore)), the same on every backend.

use imagelake_core::records::{Heartbeat, TaskBeat};

use super::{secs, t0};
use crate::MetadataStore;

fn beat(process: &str, role: &str, at: i64) -> Heartbeat {
    Heartbeat {
        process: process.to_owned(),
        role: role.to_owned(),
        host: "pod-a".to_owned(),
        version: "0.1.0".to_owned(),
        started_at: t0(),
        beat_at: t0() + secs(at),
        stopped_at: None,
        tasks: vec![TaskBeat {
            name: "workers".to_owned(),
            state: "idle".to_owned(),
            last_error: None,
            restarts: 0,
            required: true,
        }],
    }
}

pub async fn heartbeats_replace_each_other_and_age_out(store: &dyn MetadataStore) {
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let worker = format!("w-{tag}");
    let api = format!("a-{tag}");
    store
        .put_heartbeat(&beat(&worker, "worker", 0))
        .await
        .unwrap();
    store.put_heartbeat(&beat(&api, "api", 0)).await.unwrap();
    let mut later = beat(&worker, "worker", 5);
    later.tasks[0].state = "failing".to_owned();
    later.tasks[0].last_error = Some("queue unreachable".to_owned());
    store.put_heartbeat(&later).await.unwrap();

    let mine = |beats: Vec<Heartbeat>| -> Vec<Heartbeat> {
        beats
            .into_iter()
            .filter(|b| b.process.ends_with(&tag))
            .collect()
    };
    let beats = mine(store.heartbeats().await.unwrap());
    assert_eq!(beats.len(), 2, "one heartbeat per process");
    assert_eq!(beats[0].role, "api", "by role");
    assert_eq!(beats[1], later, "the newest beat replaced the first");

    assert!(store.purge_heartbeats(t0() + secs(1)).await.unwrap() >= 1);
    let beats = mine(store.heartbeats().await.unwrap());
    assert_eq!(
        beats,
        [later],
        "the process that stopped beating is forgotten"
    );
}
