//! The behaviour every [`WorkQueue`] must show, in real time.
//!
//! The metadata suite's queue check drives SQLite's logical clock; Pub/Sub keeps its own clock
//! (ack deadlines count from the pull), so these checks pass the wall-clock time and wait for
//! what they expect with a deadline, and hold both queues to the one contract the workers rely
//! on: a job is handed out to one holder at a time, comes back when its lease runs out or its
//! retry time comes, is gone once completed, and a dead letter is listed and can be re-driven.

use std::time::Duration;

use chrono::Utc;
use imagelake_core::{CustomerId, ImageId, JobId, records::Job};

use crate::WorkQueue;

/// The shortest lease Pub/Sub allows (its minimum ack deadline).
const LEASE: Duration = Duration::from_secs(10);
/// Longer than any lease or retry in these checks takes to come back.
const DEADLINE: Duration = Duration::from_secs(60);

/// Leases until a job for `image` is handed out; fails after [`DEADLINE`]. Jobs for other
/// images are a failure: each check has a queue of its own.
async fn lease_until(queue: &dyn WorkQueue, image: ImageId, lease: Duration) -> Job {
    let end = tokio::time::Instant::now() + DEADLINE;
    let mut pause = Duration::from_millis(10);
    loop {
        let mut jobs = queue.lease(Utc::now(), lease, 10).await.unwrap();
        assert!(jobs.len() <= 1, "one job was enqueued: {jobs:?}");
        if let Some(job) = jobs.pop() {
            assert_eq!(job.image_id, image, "only the enqueued image");
            return job;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "no job for image {image} within {DEADLINE:?}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

async fn enqueue_one(queue: &dyn WorkQueue) -> (ImageId, CustomerId) {
    let (image, customer) = (ImageId::new(), CustomerId::new());
    queue.enqueue(image, customer, Utc::now()).await.unwrap();
    (image, customer)
}

async fn nothing_ready(queue: &dyn WorkQueue) -> bool {
    queue.lease(Utc::now(), LEASE, 10).await.unwrap().is_empty()
}

pub async fn work_is_handed_to_one_holder(queue: &dyn WorkQueue) {
    let (image, customer) = enqueue_one(queue).await;
    if let Some(depth) = queue.depth().await.unwrap() {
        assert_eq!(depth, 1, "a queue that counts counts the waiting job");
    }
    let job = lease_until(queue, image, DEADLINE).await;
    assert_eq!((job.customer_id, job.attempts), (customer, 1));
    assert!(nothing_ready(queue).await, "leased work is invisible");
    queue.complete(job.id).await.unwrap();
}

/// A job whose holder died comes back once its lease runs out, counting the attempt; a
/// completed job never does: it is still gone when a job leased after it has come back.
pub async fn expired_leases_come_back_and_completed_work_does_not(queue: &dyn WorkQueue) {
    let (image, _) = enqueue_one(queue).await;
    let first = lease_until(queue, image, LEASE).await;
    let again = lease_until(queue, image, LEASE).await;
    assert_eq!(
        (again.id, again.attempts),
        (first.id, 2),
        "the same job, a second attempt"
    );
    queue.complete(again.id).await.unwrap();

    let (witness, _) = enqueue_one(queue).await;
    let held = lease_until(queue, witness, LEASE).await;
    let back = lease_until(queue, witness, LEASE).await;
    assert_eq!(
        back.id, held.id,
        "a whole lease went by, and only the witness came back"
    );
    queue.complete(back.id).await.unwrap();
}

pub async fn retries_wait_for_their_time(queue: &dyn WorkQueue) {
    let (image, _) = enqueue_one(queue).await;
    let job = lease_until(queue, image, DEADLINE).await;
    let at = Utc::now() + chrono::Duration::seconds(3);
    queue.retry_at(job.id, "boom", at).await.unwrap();
    assert!(nothing_ready(queue).await, "the retry waits for its time");
    let again = lease_until(queue, image, DEADLINE).await;
    // Pub/Sub counts deadlines in whole seconds.
    assert!(
        Utc::now() >= at - chrono::Duration::seconds(1),
        "handed out again before its time"
    );
    assert_eq!((again.id, again.attempts), (job.id, 2));
    queue.complete(again.id).await.unwrap();
}

pub async fn dead_letters_are_listed_and_redriven(queue: &dyn WorkQueue) {
    let (image, customer) = enqueue_one(queue).await;
    let job = lease_until(queue, image, DEADLINE).await;
    queue
        .dead_letter(job.id, "gave up", Utc::now())
        .await
        .unwrap();
    assert!(nothing_ready(queue).await, "a dead job is not handed out");
    let dead = wait_for_dead(queue, image).await;
    assert_eq!(
        (dead.customer_id, dead.last_error.as_str()),
        (customer, "gave up")
    );
    assert!(
        !queue.redrive(JobId::new(), Utc::now()).await.unwrap(),
        "an unknown job is not re-driven"
    );
    assert!(queue.redrive(dead.id, Utc::now()).await.unwrap());
    let redriven = lease_until(queue, image, DEADLINE).await;
    assert_eq!(
        redriven.attempts, 1,
        "a re-driven job starts counting again"
    );
    queue.complete(redriven.id).await.unwrap();
    assert!(
        queue
            .dead_letters(100)
            .await
            .unwrap()
            .iter()
            .all(|d| d.image_id != image),
        "a re-driven job is no longer dead"
    );
}

async fn wait_for_dead(
    queue: &dyn WorkQueue,
    image: ImageId,
) -> imagelake_core::records::DeadLetter {
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        let dead = queue.dead_letters(100).await.unwrap();
        if let Some(found) = dead.into_iter().find(|d| d.image_id == image) {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "the dead letter of {image} was not listed within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Expands to one `#[tokio::test]` per check of the [`WorkQueue`] suite, each on a fresh queue
/// made by `$make` (which may `.await`).
#[macro_export]
macro_rules! work_queue_conformance {
    ($make:expr) => {
        $crate::work_queue_conformance!(@each $make;
            work_is_handed_to_one_holder,
            expired_leases_come_back_and_completed_work_does_not,
            retries_wait_for_their_time,
            dead_letters_are_listed_and_redriven);
    };
    (@each $make:expr; $($check:ident),*) => {
        $(
            #[tokio::test]
            async fn $check() {
                let queue = $make;
                $crate::conformance::queue::$check(&queue).await;
            }
        )*
    };
}
