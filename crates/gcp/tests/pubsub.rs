//! Pub/Sub on the emulator: GCS notifications from the GCS emulator (which `scripts/test` starts
//! publishing to the `gcs-notifications` topic), redelivery and dead-lettering.

use std::{
    collections::HashMap,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use imagelake_gcp::{DeadLetter, GcsConfig, GcsJsonStore, ObjectEvent, PubSub, Received};
use object_store::{Attribute, Attributes, ObjectStore, ObjectStoreExt, PutOptions, path::Path};

const PROJECT: &str = "imagelake-test";
const NOTIFICATIONS: &str = "gcs-notifications";

fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn pubsub() -> PubSub {
    let _ = rustls::crypto::ring::default_provider().install_default();
    assert!(
        std::env::var("PUBSUB_EMULATOR_HOST").is_ok()
            && std::env::var("STORAGE_EMULATOR_HOST").is_ok(),
        "the emulators are not running: run the tests through scripts/test"
    );
    PubSub::from_env(PROJECT).unwrap()
}

/// Pulls until `accept` takes a message or the deadline passes; other messages are acknowledged.
async fn pull_until(
    ps: &PubSub,
    subscription: &str,
    mut accept: impl FnMut(&Received) -> bool,
) -> Received {
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        for m in ps.pull(subscription, 10).await.unwrap() {
            if accept(&m) {
                return m;
            }
            ps.acknowledge(subscription, &[m.ack_id]).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no matching message on {subscription} within 30 s");
}

#[tokio::test]
async fn object_writes_arrive_as_notifications() {
    let ps = pubsub();
    let subscription = unique("notified");
    ps.ensure_subscription(&subscription, NOTIFICATIONS, 30, None)
        .await
        .unwrap();
    let bucket = unique("bucket");
    let host = std::env::var("STORAGE_EMULATOR_HOST").unwrap();
    reqwest::Client::new()
        .post(format!("http://{host}/storage/v1/b?project={PROJECT}"))
        .json(&serde_json::json!({"name": bucket}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let store = GcsJsonStore::new(GcsConfig::from_env(&bucket).unwrap()).unwrap();
    let path = Path::from("originals/customer-1/image-1");
    let mut attributes = Attributes::new();
    attributes.insert(
        Attribute::Metadata("customer-id".into()),
        "customer-1".into(),
    );
    let first = store
        .put_opts(
            &path,
            b"first".to_vec().into(),
            PutOptions {
                attributes: attributes.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();

    let ours = |m: &Received| m.attributes.get("bucketId") == Some(&bucket);
    let message = pull_until(&ps, &subscription, ours).await;
    let event = ObjectEvent::parse(&message).unwrap();
    assert_eq!(event.event_type, "OBJECT_FINALIZE");
    assert_eq!(event.object, "originals/customer-1/image-1");
    assert_eq!(
        Some(event.generation.to_string()),
        first.version,
        "the generation names the write"
    );
    assert_eq!(
        event.metadata.get("customer-id").map(String::as_str),
        Some("customer-1")
    );
    ps.acknowledge(&subscription, &[message.ack_id])
        .await
        .unwrap();

    store.delete(&path).await.unwrap();
    let deleted = pull_until(&ps, &subscription, ours).await;
    assert_eq!(
        ObjectEvent::parse(&deleted).unwrap().event_type,
        "OBJECT_DELETE"
    );
    ps.acknowledge(&subscription, &[deleted.ack_id])
        .await
        .unwrap();
}

#[tokio::test]
async fn unacknowledged_messages_come_back_then_go_to_the_dead_letters() {
    let ps = pubsub();
    let (topic, dead_topic) = (unique("work"), unique("work-dead"));
    let (subscription, dead_subscription) = (unique("work-sub"), unique("work-dead-sub"));
    ps.ensure_topic(&topic).await.unwrap();
    ps.ensure_topic(&dead_topic).await.unwrap();
    ps.ensure_subscription(&dead_subscription, &dead_topic, 30, None)
        .await
        .unwrap();
    let policy = DeadLetter {
        topic: dead_topic.clone(),
        max_delivery_attempts: 5,
    };
    ps.ensure_subscription(&subscription, &topic, 30, Some(&policy))
        .await
        .unwrap();
    let attributes = HashMap::from([("kind".to_owned(), "test".to_owned())]);
    let id = ps.publish(&topic, b"payload", &attributes).await.unwrap();

    for attempt in 1..=5u32 {
        let m = pull_until(&ps, &subscription, |m| m.message_id == id).await;
        assert_eq!(m.data, b"payload");
        assert_eq!(
            m.delivery_attempt,
            Some(attempt),
            "delivery attempts are counted"
        );
        ps.modify_ack_deadline(&subscription, &[m.ack_id], 0)
            .await
            .unwrap();
    }
    // The emulator moves a message aside when it would deliver it a sixth time, so keep pulling.
    let end = Instant::now() + Duration::from_secs(30);
    let dead = loop {
        assert!(
            Instant::now() < end,
            "the message never reached the dead-letter topic"
        );
        let again = ps.pull(&subscription, 10).await.unwrap();
        assert!(
            again.iter().all(|m| m.delivery_attempt <= Some(5)),
            "never a sixth delivery"
        );
        for m in again {
            ps.modify_ack_deadline(&subscription, &[m.ack_id], 0)
                .await
                .unwrap();
        }
        if let Some(m) = ps
            .pull(&dead_subscription, 10)
            .await
            .unwrap()
            .into_iter()
            .find(|m| m.data == b"payload")
        {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        dead.attributes.get("kind").map(String::as_str),
        Some("test")
    );
    ps.acknowledge(&dead_subscription, &[dead.ack_id])
        .await
        .unwrap();
}
