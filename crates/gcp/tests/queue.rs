//! The work-queue conformance suite on the Pub/Sub emulator (started by `scripts/test`, found
//! through `PUBSUB_EMULATOR_HOST`). Each check gets topics and subscriptions of its own.

use std::sync::atomic::{AtomicU32, Ordering};

use imagelake_gcp::{PubSub, PubSubQueue, QueueConfig};

async fn fresh() -> PubSubQueue {
    let _ = rustls::crypto::ring::default_provider().install_default();
    assert!(
        std::env::var("PUBSUB_EMULATOR_HOST").is_ok(),
        "PUBSUB_EMULATOR_HOST is not set: run the tests through scripts/test, which starts the Pub/Sub emulator"
    );
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "queue-conformance-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let queue = PubSubQueue::new(
        PubSub::from_env("imagelake-test").unwrap(),
        QueueConfig {
            bucket: None,
            topic: name.clone(),
            subscription: format!("{name}-work"),
            dead_letter_topic: format!("{name}-dead"),
            dead_letter_subscription: format!("{name}-dead-letters"),
            max_delivery_attempts: 5,
            ack_deadline_seconds: 10,
        },
    );
    queue.ensure().await.expect("topics and subscriptions");
    queue
}

imagelake_metadata::work_queue_conformance!(fresh().await);
