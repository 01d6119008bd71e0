//! [`PubSubQueue`]: the [`WorkQueue`] on a Pub/Sub subscription that the bucket's notifications
//! feed, so several worker processes share the work and a killed one loses nothing.
//!
//! A lease is a pull: the message's ack deadline is the lease, `complete` acknowledges, a retry
//! moves the deadline to the retry time, and a worker that dies simply lets the deadline run out
//! so Pub/Sub delivers the message to another worker. Attempts are Pub/Sub's `deliveryAttempt`,
//! which the subscription's dead-letter policy counts; the worker dead-letters a job itself when
//! it gives up (publishing the message with the error to the dead-letter topic), and the policy
//! catches messages whose workers kept dying.
//!
//! What arrives is sorted here: a new generation of an original (`OBJECT_FINALIZE` under
//! `originals/`) becomes a [`Job`]; every other notification (renditions, deletes, metadata
//! updates, other prefixes) is acknowledged and dropped on purpose; a message that is not a
//! notification at all goes to the dead letters with the reason.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use async_trait::async_trait;
use chrono::Utc;
use imagelake_core::{
    CustomerId, ImageId, JobId, Timestamp, paths,
    records::{DeadLetter, Job},
};
use imagelake_metadata::{Result, StoreError, WorkQueue};
use sha2::{Digest, Sha256};

use crate::{
    monitoring::Backlog,
    pubsub::{self, ObjectEvent, PubSub, Received},
};

/// Attributes of messages imagelake publishes itself (re-queued work, dead letters).
const IMAGE_ID: &str = "imagelakeImageId";
const CUSTOMER_ID: &str = "imagelakeCustomerId";
const JOB_ID: &str = "imagelakeJobId";
const ERROR: &str = "imagelakeError";
const ATTEMPTS: &str = "imagelakeAttempts";
const FAILED_AT: &str = "imagelakeFailedAt";
/// Set by Pub/Sub on messages its dead-letter policy forwarded.
const SOURCE_DELIVERIES: &str = "CloudPubSubDeadLetterSourceDeliveryCount";

/// Pub/Sub allows an ack deadline of 10 to 600 seconds.
const MAX_DEADLINE: u32 = 600;
/// Pulls one lease may make while it finds only notifications that are not work.
const PULLS_PER_LEASE: usize = 20;
/// How many pulls `redrive` makes while looking for one dead letter.
const REDRIVE_PULLS: usize = 20;

/// Names of the topics and subscriptions the queue uses.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Notifications from other buckets on the same topic are ignored.
    pub bucket: Option<String>,
    /// The topic the bucket publishes its notifications to.
    pub topic: String,
    /// The pull subscription every worker shares.
    pub subscription: String,
    pub dead_letter_topic: String,
    /// A subscription on the dead-letter topic, read by the admin API.
    pub dead_letter_subscription: String,
    /// Deliveries before Pub/Sub moves a message aside (5-100).
    pub max_delivery_attempts: u32,
    /// The subscription's ack deadline (the lease) in seconds (10-600).
    pub ack_deadline_seconds: u32,
}

/// Processing work on Pub/Sub.
pub struct PubSubQueue {
    pubsub: PubSub,
    config: QueueConfig,
    /// Messages leased by this process, by job.
    leased: Mutex<HashMap<JobId, Received>>,
    /// Where the subscription's backlog is read, when it can be.
    backlog: Option<Backlog>,
}

/// What a delivered message asks for.
#[derive(Debug)]
pub enum Work {
    Job(Job),
    /// A notification that is not work, with the reason.
    Ignore(&'static str),
    /// Not something this queue understands.
    Malformed(String),
}

/// The job id of a message: stable across redeliveries, so logs and dead letters agree.
fn job_id(message_id: &str) -> JobId {
    let digest = Sha256::digest(format!("pubsub:{message_id}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    JobId(uuid::Uuid::new_v8(bytes))
}

fn parse_attr<T: std::str::FromStr>(m: &Received, name: &str) -> Option<T> {
    m.attributes.get(name)?.parse().ok()
}

/// The image a message is about, from imagelake's own attributes or a notification's object.
fn image_of(m: &Received) -> Option<(CustomerId, ImageId)> {
    match (parse_attr(m, CUSTOMER_ID), parse_attr(m, IMAGE_ID)) {
        (Some(c), Some(i)) => Some((c, i)),
        _ => paths::parse_original(m.attributes.get("objectId")?),
    }
}

/// Sorts a delivered message (see the module docs); notifications from other buckets than
/// `bucket` are not work.
pub fn work_of(m: &Received, bucket: Option<&str>) -> Work {
    let attempts = m.delivery_attempt.unwrap_or(1);
    let job = |(customer_id, image_id), generation| {
        Work::Job(Job {
            id: job_id(&m.message_id),
            image_id,
            customer_id,
            attempts,
            generation,
        })
    };
    let from = m.attributes.get("bucketId").map(String::as_str);
    if bucket.is_some() && from.is_some() && bucket != from {
        return Work::Ignore("another bucket");
    }
    if m.attributes.contains_key(IMAGE_ID) {
        return match image_of(m) {
            Some(ids) => job(ids, None),
            None => Work::Malformed("re-queued work with malformed ids".to_owned()),
        };
    }
    let event = match ObjectEvent::parse(m) {
        Ok(event) => event,
        Err(e) => return Work::Malformed(e.to_string()),
    };
    if event.event_type != "OBJECT_FINALIZE" {
        return Work::Ignore("not a new object");
    }
    match paths::parse_original(&event.object) {
        Some(ids) => job(ids, Some(event.generation)),
        None => Work::Ignore("not an original"),
    }
}

/// Seconds from now until `at`, as an ack deadline.
fn deadline_until(at: Timestamp) -> u32 {
    let secs = (at - Utc::now()).num_seconds().max(0);
    u32::try_from(secs)
        .unwrap_or(MAX_DEADLINE)
        .min(MAX_DEADLINE)
}

fn lease_seconds(lease: Duration) -> u32 {
    u32::try_from(lease.as_secs())
        .unwrap_or(MAX_DEADLINE)
        .clamp(10, MAX_DEADLINE)
}

impl PubSubQueue {
    pub fn new(pubsub: PubSub, config: QueueConfig) -> Self {
        Self {
            pubsub,
            config,
            leased: Mutex::new(HashMap::new()),
            backlog: None,
        }
    }

    /// Reads the queue's depth from Cloud Monitoring.
    pub fn with_backlog(mut self, backlog: Option<Backlog>) -> Self {
        self.backlog = backlog;
        self
    }

    /// Creates the topics and subscriptions when they are missing. Production creates them
    /// with the IAM grants in `deploy/`; this makes the emulator and a first run work.
    pub async fn ensure(&self) -> Result<()> {
        let c = &self.config;
        let ps = &self.pubsub;
        ps.ensure_topic(&c.topic).await.map_err(StoreError::from)?;
        ps.ensure_topic(&c.dead_letter_topic)
            .await
            .map_err(StoreError::from)?;
        let dead_letter = pubsub::DeadLetter {
            topic: c.dead_letter_topic.clone(),
            max_delivery_attempts: c.max_delivery_attempts.clamp(5, 100),
        };
        ps.ensure_subscription(
            &c.subscription,
            &c.topic,
            c.ack_deadline_seconds.clamp(10, MAX_DEADLINE),
            Some(&dead_letter),
        )
        .await
        .map_err(StoreError::from)?;
        ps.ensure_subscription(&c.dead_letter_subscription, &c.dead_letter_topic, 60, None)
            .await
            .map_err(StoreError::from)
    }

    fn take(&self, job: JobId) -> Option<Received> {
        self.leased
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&job)
    }

    async fn ack(&self, subscription: &str, ack_ids: Vec<String>) -> Result<()> {
        if ack_ids.is_empty() {
            return Ok(());
        }
        self.pubsub
            .acknowledge(subscription, &ack_ids)
            .await
            .map_err(StoreError::from)
    }

    async fn nack(&self, subscription: &str, ack_ids: Vec<String>) -> Result<()> {
        if ack_ids.is_empty() {
            return Ok(());
        }
        self.pubsub
            .modify_ack_deadline(subscription, &ack_ids, 0)
            .await
            .map_err(StoreError::from)
    }

    /// Publishes a message to the dead-letter topic with why it failed.
    async fn publish_dead(&self, m: &Received, error: &str, attempts: u32) -> Result<()> {
        let mut attributes = m.attributes.clone();
        attributes.insert(JOB_ID.into(), job_id(&m.message_id).to_string());
        attributes.insert(ERROR.into(), error.chars().take(1000).collect());
        attributes.insert(ATTEMPTS.into(), attempts.to_string());
        attributes.insert(FAILED_AT.into(), Utc::now().to_rfc3339());
        if let Some((customer, image)) = image_of(m) {
            attributes.insert(CUSTOMER_ID.into(), customer.to_string());
            attributes.insert(IMAGE_ID.into(), image.to_string());
        }
        self.pubsub
            .publish(&self.config.dead_letter_topic, &m.data, &attributes)
            .await
            .map(drop)
            .map_err(StoreError::from)
    }

    /// Turns pulled messages into leased jobs; everything else is settled here.
    async fn sort(&self, messages: Vec<Received>, lease_for: Duration) -> Result<Vec<Job>> {
        let (mut jobs, mut held, mut done) = (Vec::new(), Vec::new(), Vec::new());
        for m in messages {
            match work_of(&m, self.config.bucket.as_deref()) {
                Work::Job(job) => {
                    held.push(m.ack_id.clone());
                    self.leased
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(job.id, m);
                    jobs.push(job);
                }
                Work::Ignore(reason) => {
                    tracing::debug!(message_id = %m.message_id, reason, "notification is not work");
                    done.push(m.ack_id);
                }
                Work::Malformed(error) => {
                    tracing::warn!(message_id = %m.message_id, %error, "unreadable message moved to the dead letters");
                    self.publish_dead(&m, &error, m.delivery_attempt.unwrap_or(1))
                        .await?;
                    done.push(m.ack_id);
                }
            }
        }
        self.ack(&self.config.subscription, done).await?;
        let seconds = lease_seconds(lease_for);
        if !held.is_empty() && seconds != self.config.ack_deadline_seconds {
            self.pubsub
                .modify_ack_deadline(&self.config.subscription, &held, seconds)
                .await
                .map_err(StoreError::from)?;
        }
        Ok(jobs)
    }

    fn dead_letter_of(m: &Received) -> DeadLetter {
        let (customer_id, image_id) =
            image_of(m).unwrap_or((CustomerId(uuid::Uuid::nil()), ImageId(uuid::Uuid::nil())));
        let attempts = parse_attr(m, ATTEMPTS)
            .or_else(|| parse_attr(m, SOURCE_DELIVERIES))
            .unwrap_or(0);
        DeadLetter {
            id: job_id(&m.message_id),
            image_id,
            customer_id,
            attempts,
            last_error: m.attributes.get(ERROR).cloned().unwrap_or_else(|| {
                format!("delivered {attempts} times without being acknowledged")
            }),
            failed_at: m
                .attributes
                .get(FAILED_AT)
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map_or_else(Utc::now, |t| t.with_timezone(&Utc)),
        }
    }
}

#[async_trait]
impl WorkQueue for PubSubQueue {
    /// Publishes work for an image that is already in the bucket (a re-run).
    async fn enqueue(&self, image: ImageId, customer: CustomerId, _: Timestamp) -> Result<JobId> {
        let mut attributes = HashMap::from([
            (IMAGE_ID.to_owned(), image.to_string()),
            (CUSTOMER_ID.to_owned(), customer.to_string()),
        ]);
        if let Some(bucket) = &self.config.bucket {
            attributes.insert("bucketId".to_owned(), bucket.clone());
        }
        let id = self
            .pubsub
            .publish(&self.config.topic, b"", &attributes)
            .await
            .map_err(StoreError::from)?;
        Ok(job_id(&id))
    }

    /// Pulls until there is work or the subscription has nothing ready: notifications that
    /// are not work (renditions, deletes) are acknowledged on the way and never cost the
    /// caller an idle wait.
    async fn lease(&self, _: Timestamp, lease_for: Duration, max: usize) -> Result<Vec<Job>> {
        let max = u32::try_from(max).unwrap_or(1000).clamp(1, 1000);
        for _ in 0..PULLS_PER_LEASE {
            let messages = self
                .pubsub
                .pull(&self.config.subscription, max)
                .await
                .map_err(StoreError::from)?;
            if messages.is_empty() {
                break;
            }
            let jobs = self.sort(messages, lease_for).await?;
            if !jobs.is_empty() {
                return Ok(jobs);
            }
        }
        Ok(Vec::new())
    }

    async fn complete(&self, job: JobId) -> Result<()> {
        match self.take(job) {
            Some(m) => self.ack(&self.config.subscription, vec![m.ack_id]).await,
            None => Err(StoreError::NotFound),
        }
    }

    async fn retry_at(&self, job: JobId, _error: &str, at: Timestamp) -> Result<()> {
        let m = self.take(job).ok_or(StoreError::NotFound)?;
        self.pubsub
            .modify_ack_deadline(&self.config.subscription, &[m.ack_id], deadline_until(at))
            .await
            .map_err(StoreError::from)
    }

    async fn dead_letter(&self, job: JobId, error: &str, _: Timestamp) -> Result<()> {
        let m = self.take(job).ok_or(StoreError::NotFound)?;
        self.publish_dead(&m, error, m.delivery_attempt.unwrap_or(1))
            .await?;
        self.ack(&self.config.subscription, vec![m.ack_id]).await
    }

    /// The subscription's undelivered messages from Cloud Monitoring, a few minutes old; `None`
    /// where that cannot be read.
    async fn depth(&self) -> Result<Option<u64>> {
        Ok(match &self.backlog {
            Some(backlog) => backlog.undelivered().await,
            None => None,
        })
    }

    /// A sample of the dead letters: Pub/Sub has no listing, so this pulls up to `limit` and
    /// hands them straight back.
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        let sub = &self.config.dead_letter_subscription;
        let max = u32::try_from(limit).unwrap_or(1000).clamp(1, 1000);
        let messages = self.pubsub.pull(sub, max).await.map_err(StoreError::from)?;
        let dead = messages.iter().map(Self::dead_letter_of).collect();
        self.nack(sub, messages.into_iter().map(|m| m.ack_id).collect())
            .await?;
        Ok(dead)
    }

    /// Finds the dead letter among those the dead-letter subscription hands out and publishes
    /// its notification again, as it first arrived.
    async fn redrive(&self, job: JobId, _: Timestamp) -> Result<bool> {
        let sub = self.config.dead_letter_subscription.clone();
        let mut held = Vec::new();
        let mut found = None;
        for _ in 0..REDRIVE_PULLS {
            let messages = self
                .pubsub
                .pull(&sub, 100)
                .await
                .map_err(StoreError::from)?;
            if messages.is_empty() {
                break;
            }
            for m in messages {
                if found.is_none() && job_id(&m.message_id) == job {
                    found = Some(m);
                } else {
                    held.push(m.ack_id);
                }
            }
            if found.is_some() {
                break;
            }
        }
        let result = match &found {
            Some(m) => {
                let mut attributes: HashMap<_, _> = m
                    .attributes
                    .iter()
                    .filter(|(k, _)| !k.starts_with("imagelake") && !k.starts_with("CloudPubSub"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if let Some((customer, image)) = image_of(m)
                    && !attributes.contains_key("objectId")
                {
                    attributes.insert(IMAGE_ID.into(), image.to_string());
                    attributes.insert(CUSTOMER_ID.into(), customer.to_string());
                }
                self.pubsub
                    .publish(&self.config.topic, &m.data, &attributes)
                    .await
                    .map_err(StoreError::from)?;
                self.ack(&sub, vec![m.ack_id.clone()]).await?;
                true
            }
            None => false,
        };
        self.nack(&sub, held).await?;
        Ok(result)
    }

    /// Nothing to release: a lease that belonged to a dead process runs out on its own.
    async fn release_leases(&self) -> Result<u64> {
        Ok(0)
    }
}
