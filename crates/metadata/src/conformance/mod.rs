//! The behaviour every [`MetadataStore`] and [`WorkQueue`] backend must show, as one suite.
//!
//! Each check takes a fresh backend; [`metadata_conformance!`](crate::metadata_conformance)
//! turns the list into one `#[tokio::test]` per check for a backend constructor, so SQLite and
//! Firestore are held to exactly the same contract.

mod heartbeats;
pub mod queue;
mod runs;
mod sessions;

pub use heartbeats::heartbeats_replace_each_other_and_age_out;
pub use runs::{
    backfills_round_trip_and_age_out, open_runs_are_listed_until_they_end,
    run_history_pages_newest_first,
};
pub use sessions::sessions_are_found_listed_and_ended;

use std::time::Duration;

use chrono::TimeZone;
use imagelake_core::{
    CustomerId, ImageId, KeyId, Timestamp,
    events::{Event, EventType},
    records::{
        AnyKey, ApiKey, Customer, ErrorInfo, Image, ImageStatus, KeyRole, ServiceKey, Source,
        WireSecrets,
    },
};

use crate::{
    Cursor, IdempotencyRecord, ImageQuery, InsertOutcome, MetadataStore, NewImage, Removal,
    StoreError, WorkQueue,
};

/// A fixed instant with a sub-millisecond part, so precision loss shows.
pub fn t0() -> Timestamp {
    chrono::Utc
        .timestamp_opt(1_767_225_600, 123_456_000)
        .unwrap()
}

fn secs(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

pub fn customer(name: &str) -> (Customer, ApiKey) {
    let id = CustomerId::new();
    let customer = Customer {
        id,
        name: name.to_owned(),
        email: format!("{name}@example.test"),
        plan: "standard".to_owned(),
        created_at: t0(),
        updated_at: t0(),
    };
    (customer, key(id, &format!("hash-{id}")))
}

pub fn key(customer: CustomerId, hash: &str) -> ApiKey {
    ApiKey {
        id: KeyId::new(),
        customer_id: customer,
        prefix: "ilk_test".to_owned(),
        hash: hash.to_owned(),
        wire: Some(WireSecrets {
            scram: format!("SCRAM-SHA-256$4096:c2FsdA==${hash}:server"),
            md5: format!("md5{hash}"),
        }),
        created_at: t0(),
        revoked_at: None,
    }
}

pub fn image(customer: CustomerId, uploaded_at: Timestamp, sha: &str) -> Image {
    Image {
        id: ImageId::new(),
        customer_id: customer,
        status: ImageStatus::Received,
        bytes: 1234,
        sha256: sha.to_owned(),
        content_type: "image/jpeg".to_owned(),
        filename: Some("a.jpg".to_owned()),
        uploaded_at,
        expires_at: uploaded_at + chrono::Duration::days(7),
        facts: None,
        error: None,
        processed_at: None,
        generation: None,
        source: None,
    }
}

fn new(image: &Image) -> NewImage {
    NewImage {
        image: image.clone(),
        idempotency: None,
    }
}

fn query(now: Timestamp, limit: usize) -> ImageQuery {
    ImageQuery {
        since: None,
        until: None,
        after: None,
        limit,
        now,
    }
}

pub async fn customers_and_keys(store: &dyn MetadataStore) {
    let (c, k) = customer("acme");
    store.insert_customer(&c, &k).await.unwrap();
    assert!(matches!(
        store.insert_customer(&c, &k).await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert_eq!(store.get_customer(c.id).await.unwrap(), Some(c.clone()));
    assert_eq!(
        store
            .find_key(&k.hash)
            .await
            .unwrap()
            .map(|k| k.customer_id),
        Some(c.id)
    );

    let mut renamed = c.clone();
    renamed.name = "Acme Corp".to_owned();
    renamed.updated_at = t0() + secs(1);
    store.update_customer(&renamed).await.unwrap();
    assert_eq!(
        store.get_customer(c.id).await.unwrap().unwrap().name,
        "Acme Corp"
    );

    let second = key(c.id, "second-hash");
    store.insert_key(&second).await.unwrap();
    assert_eq!(store.list_keys(c.id).await.unwrap().len(), 2);
    store.revoke_key(c.id, k.id, t0() + secs(2)).await.unwrap();
    assert_eq!(
        store.find_key(&k.hash).await.unwrap(),
        None,
        "revoked keys stop working"
    );
    assert!(store.find_key("second-hash").await.unwrap().is_some());
    let live = store.live_key_hashes(1000).await.unwrap();
    assert!(live.contains(&"second-hash".to_owned()));
    assert!(!live.contains(&k.hash), "revoked keys are not live");
    assert!(matches!(
        store.revoke_key(c.id, k.id, t0()).await,
        Err(StoreError::NotFound)
    ));

    let (other, _) = customer("other");
    assert!(matches!(
        store.revoke_key(other.id, second.id, t0()).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.update_customer(&other).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.insert_key(&key(other.id, "x")).await,
        Err(StoreError::NotFound)
    ));
}

pub async fn service_keys_have_roles(store: &dyn MetadataStore) {
    let service_key = |role, name: &str, hash: &str, at| ServiceKey {
        key_id: KeyId::new(),
        role,
        name: name.to_owned(),
        prefix: format!("ilk_{name}"),
        hash: hash.to_owned(),
        wire: None,
        created_at: at,
        revoked_at: None,
    };
    let billing = service_key(KeyRole::Ingest, "billing", "billing-hash", t0());
    let bi = service_key(KeyRole::Analyst, "bi", "bi-hash", t0() + secs(1));
    store.insert_service_key(&billing).await.unwrap();
    store.insert_service_key(&bi).await.unwrap();
    assert_eq!(
        store.find_service_key("billing-hash").await.unwrap(),
        Some(billing.clone())
    );
    assert_eq!(
        store.find_key("billing-hash").await.unwrap(),
        None,
        "a company key is no customer's key"
    );
    let ours = |keys: Vec<ServiceKey>| -> Vec<ServiceKey> {
        keys.into_iter()
            .filter(|k| k.key_id == billing.key_id || k.key_id == bi.key_id)
            .collect()
    };
    let listed = ours(store.list_service_keys().await.unwrap());
    assert_eq!(listed, [billing.clone(), bi.clone()], "oldest first");

    let at = t0() + secs(5);
    store.revoke_service_key(billing.key_id, at).await.unwrap();
    assert_eq!(
        store.find_service_key("billing-hash").await.unwrap(),
        None,
        "revoked at once"
    );
    let listed = ours(store.list_service_keys().await.unwrap());
    assert_eq!(listed[0].revoked_at, Some(at), "listed with its revocation");
    assert!(matches!(
        store.revoke_service_key(billing.key_id, at).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.revoke_service_key(KeyId::new(), at).await,
        Err(StoreError::NotFound)
    ));
    assert!(store.find_service_key("bi-hash").await.unwrap().is_some());
}

/// The Postgres wire logs in by key id: a customer's key or a company one, with its wire
/// secrets, and nothing once revoked.
pub async fn keys_are_found_by_id(store: &dyn MetadataStore) {
    let (customer, key) = customer("wire");
    store.insert_customer(&customer, &key).await.unwrap();
    assert_eq!(
        store.find_key_by_id(key.id).await.unwrap(),
        Some(AnyKey::Customer(key.clone())),
        "with its wire secrets"
    );
    let analyst = ServiceKey {
        key_id: KeyId::new(),
        role: KeyRole::Analyst,
        name: "dashboards".to_owned(),
        prefix: "ilk_dash".to_owned(),
        hash: format!("hash-{}", KeyId::new()),
        wire: Some(WireSecrets {
            scram: "SCRAM-SHA-256$4096:c2FsdA==$stored:server".to_owned(),
            md5: "md5abc".to_owned(),
        }),
        created_at: t0(),
        revoked_at: None,
    };
    store.insert_service_key(&analyst).await.unwrap();
    assert_eq!(
        store.find_key_by_id(analyst.key_id).await.unwrap(),
        Some(AnyKey::Service(analyst.clone()))
    );
    assert_eq!(store.find_key_by_id(KeyId::new()).await.unwrap(), None);
    store
        .revoke_key(customer.id, key.id, t0() + secs(1))
        .await
        .unwrap();
    store
        .revoke_service_key(analyst.key_id, t0() + secs(1))
        .await
        .unwrap();
    assert_eq!(store.find_key_by_id(key.id).await.unwrap(), None, "revoked");
    assert_eq!(store.find_key_by_id(analyst.key_id).await.unwrap(), None);
}

pub async fn delete_customer_cascades(store: &dyn MetadataStore) {
    let (c, k) = customer("gone");
    store.insert_customer(&c, &k).await.unwrap();
    let img = image(c.id, t0(), "sha-gone");
    store.insert_image(&new(&img), false).await.unwrap();
    assert_eq!(store.customer_image_ids(c.id).await.unwrap(), vec![img.id]);
    store.delete_customer(c.id, t0()).await.unwrap();
    assert_eq!(store.get_customer(c.id).await.unwrap(), None);
    assert_eq!(store.get_image(img.id).await.unwrap(), None);
    assert_eq!(store.find_key(&k.hash).await.unwrap(), None);
    assert!(matches!(
        store.delete_customer(c.id, t0()).await,
        Err(StoreError::NotFound)
    ));
}

pub async fn images_round_trip_with_microseconds(store: &dyn MetadataStore) {
    let (c, _) = customer("roundtrip");
    let mut img = image(c.id, t0(), "sha-rt");
    assert_eq!(
        store.insert_image(&new(&img), false).await.unwrap(),
        InsertOutcome::Created
    );
    assert_eq!(store.get_image(img.id).await.unwrap(), Some(img.clone()));

    img.status = ImageStatus::Failed;
    img.error = Some(ErrorInfo {
        code: imagelake_core::ErrorCode::CorruptImage,
        message: "truncated".into(),
    });
    img.processed_at = Some(t0() + chrono::Duration::microseconds(1));
    store.update_image(&img).await.unwrap();
    assert_eq!(store.get_image(img.id).await.unwrap(), Some(img.clone()));

    // What a direct upload learns from its bytes replaces what the record was made with.
    img.status = ImageStatus::Processed;
    img.error = None;
    img.bytes = 4242;
    img.sha256 = "sha-rt-overwritten".into();
    img.content_type = "image/png".into();
    img.generation = Some(1_700_000_000_123_456);
    store.update_image(&img).await.unwrap();
    assert_eq!(store.get_image(img.id).await.unwrap(), Some(img.clone()));

    assert!(
        store
            .delete_image(&img, Removal::Deleted, t0())
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_image(&img, Removal::Deleted, t0())
            .await
            .unwrap()
    );
    assert!(matches!(
        store.update_image(&img).await,
        Err(StoreError::NotFound)
    ));
}

/// Each lifecycle change leaves exactly one event in the outbox, equal to the one
/// [`Event`]'s constructors make; what is not a change (a duplicate, a replay, a repeated update,
/// a second delete) leaves none.
pub async fn every_change_writes_one_event(store: &dyn MetadataStore) {
    let (mut c, k) = customer("events");
    store.insert_customer(&c, &k).await.unwrap();
    let created = Event::customer(EventType::CustomerCreated, &c, c.created_at);
    c.plan = "enterprise".into();
    c.updated_at = t0() + secs(1);
    store.update_customer(&c).await.unwrap();
    let updated = Event::customer(EventType::CustomerUpdated, &c, c.updated_at);

    let mut kept = image(c.id, t0() + secs(2), "sha-events");
    let idem = IdempotencyRecord {
        key: "events-1".into(),
        request_hash: "h".into(),
        status: 201,
        body: "{}".into(),
        created_at: kept.uploaded_at,
    };
    let with_key = NewImage {
        image: kept.clone(),
        idempotency: Some(idem),
    };
    store.insert_image(&with_key, false).await.unwrap();
    let received = Event::image(EventType::ImageReceived, &kept, kept.uploaded_at);
    let twin = image(c.id, t0() + secs(2), "sha-events");
    assert!(matches!(
        store.insert_image(&with_key, false).await.unwrap(),
        InsertOutcome::Replay(_)
    ));
    assert!(matches!(
        store.insert_image(&new(&twin), false).await.unwrap(),
        InsertOutcome::Duplicate(_)
    ));
    // What changes nothing is recorded too, once per delivery.
    let duplicate = Event::duplicate(&kept, Source::Kafka, Some("kafka:t:0:7"), t0() + secs(2));
    let refused = Event::refused(
        c.id,
        Source::Api,
        imagelake_core::ErrorCode::PayloadTooLarge,
        99,
        None,
        t0() + secs(2),
    );
    for event in [&duplicate, &duplicate, &refused] {
        store.record_event(event).await.unwrap();
    }
    kept.status = ImageStatus::Processed;
    kept.processed_at = Some(t0() + secs(3));
    store.update_image(&kept).await.unwrap();
    store.update_image(&kept).await.unwrap();
    let processed = Event::image(EventType::ImageProcessed, &kept, t0() + secs(3));

    let expiring = image(c.id, t0() + secs(4), "sha-expiring");
    store.insert_image(&new(&expiring), false).await.unwrap();
    let mut waiting = expiring.clone();
    waiting.status = ImageStatus::Received;
    store.update_image(&waiting).await.unwrap();
    assert!(
        store
            .delete_image(&expiring, Removal::Expired, t0() + secs(5))
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_image(&expiring, Removal::Deleted, t0() + secs(5))
            .await
            .unwrap()
    );
    store.delete_customer(c.id, t0() + secs(6)).await.unwrap();

    let expected = vec![
        created,
        updated,
        received,
        duplicate,
        refused,
        processed,
        Event::image(EventType::ImageReceived, &expiring, expiring.uploaded_at),
        Event::image(EventType::ImageExpired, &expiring, t0() + secs(5)),
        Event::image(EventType::ImageDeleted, &kept, t0() + secs(6)),
        Event::customer(EventType::CustomerDeleted, &c, t0() + secs(6)),
    ];
    let events = store.unpublished_events(100).await.unwrap();
    assert!(
        events
            .windows(2)
            .all(|w| w[0].occurred_at <= w[1].occurred_at),
        "oldest first"
    );
    let ids = |events: &[Event]| {
        let mut ids: Vec<_> = events.iter().map(|e| e.event_id).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&events), ids(&expected), "one event per change");
    for event in &expected {
        let found = events
            .iter()
            .find(|e| e.event_id == event.event_id)
            .unwrap();
        assert_eq!(found, event, "{} as written", event.event_type.as_str());
    }

    let first: Vec<_> = events[..3].iter().map(|e| e.event_id).collect();
    store.mark_published(&first, t0() + secs(7)).await.unwrap();
    let left = store.unpublished_events(100).await.unwrap();
    assert_eq!(
        ids(&left),
        ids(&events[3..]),
        "published events are not offered again"
    );
    store.purge_events(t0() + secs(5)).await.unwrap();
    let left = store.unpublished_events(100).await.unwrap();
    assert_eq!(left.len(), 3, "events older than the cut are purged");
    assert!(left.iter().all(|e| e.occurred_at >= t0() + secs(5)));
    assert_eq!(store.unpublished_events(2).await.unwrap().len(), 2);
}

pub async fn leases_have_one_holder(store: &dyn MetadataStore) {
    let lease = |holder: &'static str, now: i64| async move {
        store
            .acquire_lease("publisher", holder, t0() + secs(now), t0() + secs(now + 10))
            .await
            .unwrap()
    };
    assert!(lease("a", 0).await);
    assert!(!lease("b", 1).await, "held by another");
    assert!(lease("a", 5).await, "the holder renews");
    assert!(!lease("b", 14).await, "the renewal counts");
    assert!(lease("b", 15).await, "an expired lease is taken over");
    assert!(!lease("a", 16).await);
    assert!(
        store
            .acquire_lease("other", "a", t0(), t0() + secs(10))
            .await
            .unwrap(),
        "leases are by name"
    );
}

pub async fn records_without_bytes_are_never_duplicates(store: &dyn MetadataStore) {
    let (c, _) = customer("pending");
    let mut first = image(c.id, t0(), "");
    first.status = ImageStatus::PendingUpload;
    let mut second = image(c.id, t0() + secs(1), "");
    second.status = ImageStatus::PendingUpload;
    for img in [&first, &second] {
        assert_eq!(
            store.insert_image(&new(img), false).await.unwrap(),
            InsertOutcome::Created
        );
    }
    assert_eq!(store.get_image(second.id).await.unwrap(), Some(second));
}

/// One customer's concurrent uploads: different bytes all land, the same bytes land once.
pub async fn concurrent_inserts_of_one_customer(store: &dyn MetadataStore) {
    let (c, _) = customer("busy");
    let distinct: Vec<NewImage> = (0..8)
        .map(|n| new(&image(c.id, t0() + secs(n), &format!("sha-busy-{n}"))))
        .collect();
    let outcomes =
        futures::future::join_all(distinct.iter().map(|n| store.insert_image(n, false))).await;
    for outcome in outcomes {
        assert_eq!(outcome.unwrap(), InsertOutcome::Created);
    }
    let same: Vec<NewImage> = (0..4)
        .map(|n| new(&image(c.id, t0() + secs(20 + n), "sha-busy-same")))
        .collect();
    let outcomes =
        futures::future::join_all(same.iter().map(|n| store.insert_image(n, false))).await;
    let created = outcomes
        .into_iter()
        .filter(|o| matches!(o.as_ref().unwrap(), InsertOutcome::Created))
        .count();
    assert_eq!(created, 1, "the same bytes are stored once");
}

pub async fn duplicates_are_per_customer_and_live_only(store: &dyn MetadataStore) {
    let (a, _) = customer("dup-a");
    let (b, _) = customer("dup-b");
    let first = image(a.id, t0(), "same-bytes");
    assert_eq!(
        store.insert_image(&new(&first), false).await.unwrap(),
        InsertOutcome::Created
    );
    let again = image(a.id, t0() + secs(5), "same-bytes");
    assert_eq!(
        store.insert_image(&new(&again), false).await.unwrap(),
        InsertOutcome::Duplicate(Box::new(first.clone()))
    );
    let other_customer = image(b.id, t0() + secs(5), "same-bytes");
    assert_eq!(
        store
            .insert_image(&new(&other_customer), false)
            .await
            .unwrap(),
        InsertOutcome::Created
    );
    let after_expiry = image(a.id, first.expires_at, "same-bytes");
    assert_eq!(
        store
            .insert_image(&new(&after_expiry), false)
            .await
            .unwrap(),
        InsertOutcome::Created
    );
    assert_eq!(
        store
            .find_live_duplicate(a.id, "same-bytes", t0() + secs(10))
            .await
            .unwrap()
            .map(|i| i.id),
        Some(first.id)
    );
}

pub async fn idempotency_keys_replay(store: &dyn MetadataStore) {
    let (c, _) = customer("idem");
    let record = IdempotencyRecord {
        key: "k1".into(),
        request_hash: "h1".into(),
        status: 201,
        body: "{\"id\":1}".into(),
        created_at: t0(),
    };
    let first = NewImage {
        image: image(c.id, t0(), "idem-1"),
        idempotency: Some(record.clone()),
    };
    assert_eq!(
        store.insert_image(&first, false).await.unwrap(),
        InsertOutcome::Created
    );
    let second = NewImage {
        image: image(c.id, t0(), "idem-2"),
        idempotency: Some(record.clone()),
    };
    assert_eq!(
        store.insert_image(&second, false).await.unwrap(),
        InsertOutcome::Replay(record.clone())
    );
    assert_eq!(
        store.get_image(second.image.id).await.unwrap(),
        None,
        "a replay writes nothing"
    );
    assert_eq!(
        store.find_idempotent(c.id, "k1").await.unwrap(),
        Some(record)
    );
    let (other, _) = customer("idem-other");
    assert_eq!(
        store.find_idempotent(other.id, "k1").await.unwrap(),
        None,
        "keys are per customer"
    );
    assert_eq!(store.purge_idempotency(t0() + secs(1)).await.unwrap(), 1);
    assert_eq!(store.find_idempotent(c.id, "k1").await.unwrap(), None);
}

/// An answer that wrote no image (a duplicate) is remembered for its key once: the first answer
/// stands, whoever asks later or at the same time.
pub async fn answers_are_remembered_once(store: &dyn MetadataStore) {
    let (c, _) = customer("remember");
    let answer = |status: u16, body: &str| IdempotencyRecord {
        key: "dup-key".into(),
        request_hash: "h".into(),
        status,
        body: body.into(),
        created_at: t0(),
    };
    let racing: Vec<IdempotencyRecord> = (0..6).map(|n| answer(200, &format!("{n}"))).collect();
    let outcomes =
        futures::future::join_all(racing.iter().map(|r| store.remember_answer(c.id, r))).await;
    let mut earlier = Vec::new();
    let mut recorded_now = 0;
    for outcome in outcomes {
        match outcome.unwrap() {
            None => recorded_now += 1,
            Some(first) => earlier.push(first),
        }
    }
    assert_eq!(recorded_now, 1, "exactly one answer is recorded");
    let recorded = store
        .find_idempotent(c.id, "dup-key")
        .await
        .unwrap()
        .unwrap();
    assert!(
        earlier.iter().all(|e| *e == recorded),
        "the others get the recorded answer back"
    );
    assert_eq!(
        store
            .remember_answer(c.id, &answer(201, "later"))
            .await
            .unwrap(),
        Some(recorded.clone()),
        "a later answer gets the first one back"
    );
    let inserted = NewImage {
        image: image(c.id, t0(), "remember-sha"),
        idempotency: Some(answer(201, "created")),
    };
    assert_eq!(
        store.insert_image(&inserted, false).await.unwrap(),
        InsertOutcome::Replay(recorded),
        "an insert with a remembered key replays it"
    );
}

/// One customer per email, whatever its case, on create and on update.
pub async fn customer_emails_are_unique(store: &dyn MetadataStore) {
    let (mut first, k1) = customer("unique");
    first.email = "Ops@Unique.test".to_owned();
    store.insert_customer(&first, &k1).await.unwrap();
    let (mut twin, k2) = customer("unique-twin");
    twin.email = "ops@unique.TEST".to_owned();
    assert!(matches!(
        store.insert_customer(&twin, &k2).await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert_eq!(store.get_customer(twin.id).await.unwrap(), None);
    assert_eq!(store.find_key(&k2.hash).await.unwrap(), None);

    let (other, k3) = customer("unique-other");
    store.insert_customer(&other, &k3).await.unwrap();
    let mut taking = other.clone();
    taking.email = "OPS@unique.test".to_owned();
    assert!(matches!(
        store.update_customer(&taking).await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert_eq!(
        store.get_customer(other.id).await.unwrap().unwrap().email,
        other.email,
        "a refused update changes nothing"
    );
    let mut recased = first.clone();
    recased.email = "ops@unique.test".to_owned();
    store.update_customer(&recased).await.unwrap();
    let mut moved = recased.clone();
    moved.email = "new@unique.test".to_owned();
    store.update_customer(&moved).await.unwrap();
    store
        .insert_customer(&twin, &k2)
        .await
        .expect("the old email is free again");
    store.delete_customer(twin.id, t0()).await.unwrap();
    let (mut again, k4) = customer("unique-again");
    again.email = "ops@unique.test".to_owned();
    store
        .insert_customer(&again, &k4)
        .await
        .expect("a deleted customer's email is free");
}

pub async fn listing_pages_newest_first(store: &dyn MetadataStore) {
    let (c, _) = customer("lister");
    let (other, _) = customer("lister-other");
    let mut ids = Vec::new();
    for i in 0..7 {
        // Two images share each timestamp, so the id must break ties.
        let img = image(c.id, t0() + secs(i / 2), &format!("list-{i}"));
        store.insert_image(&new(&img), false).await.unwrap();
        ids.push(img.id);
    }
    store
        .insert_image(&new(&image(other.id, t0(), "list-other")), false)
        .await
        .unwrap();
    ids.reverse();

    let now = t0() + secs(60);
    let mut seen = Vec::new();
    let mut q = query(now, 3);
    loop {
        let page = store.list_images(Some(c.id), &q).await.unwrap();
        seen.extend(page.iter().map(|i| i.id));
        let Some(last) = page.last() else { break };
        if page.len() < q.limit {
            break;
        }
        q.after = Some(Cursor {
            uploaded_at: last.uploaded_at,
            id: last.id,
        });
    }
    assert_eq!(seen, ids, "every image once, newest first, across pages");

    let window = ImageQuery {
        since: Some(t0() + secs(1)),
        until: Some(t0() + secs(3)),
        ..query(now, 100)
    };
    let in_window = store.list_images(Some(c.id), &window).await.unwrap();
    assert_eq!(in_window.len(), 4, "since is inclusive, until exclusive");

    let after_expiry = query(t0() + chrono::Duration::days(7) + secs(1), 100);
    let live = store.list_images(Some(c.id), &after_expiry).await.unwrap();
    assert_eq!(live.len(), 3, "expired images are not listed");
}

/// The SQL doors' live views: every customer's images in a window, newest first, and the
/// newest customers.
pub async fn every_customer_listed_for_the_live_views(store: &dyn MetadataStore) {
    let mut customers = Vec::new();
    for (i, name) in ["live-a", "live-b", "live-c"].into_iter().enumerate() {
        let (mut c, k) = customer(name);
        c.created_at = t0() + secs(i as i64);
        store.insert_customer(&c, &k).await.unwrap();
        customers.push(c);
    }
    for (i, c) in customers.iter().enumerate() {
        for j in 0..2 {
            let at = t0() + secs(10 * i as i64 + j);
            let img = image(c.id, at, &format!("live-{i}-{j}"));
            store.insert_image(&new(&img), false).await.unwrap();
        }
    }
    let now = t0() + secs(600);
    let everyone = store.list_images(None, &query(now, 100)).await.unwrap();
    assert_eq!(everyone.len(), 6, "every customer's images");
    let times: Vec<_> = everyone.iter().map(|i| i.uploaded_at).collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    let window = ImageQuery {
        since: Some(t0() + secs(10)),
        until: Some(t0() + secs(20)),
        ..query(now, 100)
    };
    let in_window = store.list_images(None, &window).await.unwrap();
    assert_eq!(in_window.len(), 2, "since inclusive, until exclusive");
    assert!(in_window.iter().all(|i| i.customer_id == customers[1].id));
    assert_eq!(
        store.list_images(None, &query(now, 4)).await.unwrap().len(),
        4
    );

    let newest = store.list_customers(None, 2).await.unwrap();
    let names: Vec<&str> = newest.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["live-c", "live-b"], "the newest customers first");
    let last = &newest[1];
    let next = store
        .list_customers(Some((last.created_at, last.id)), 1)
        .await
        .unwrap();
    assert_eq!(
        next[0].name, "live-a",
        "the page after the cursor's customer"
    );
}

pub async fn pending_uploads_oldest_first(store: &dyn MetadataStore) {
    let (c, _) = customer("pending-age");
    let mut old = image(c.id, t0() - secs(3600), "");
    old.status = ImageStatus::PendingUpload;
    let mut older = image(c.id, t0() - secs(7200), "");
    older.status = ImageStatus::PendingUpload;
    let mut recent = image(c.id, t0() - secs(10), "");
    recent.status = ImageStatus::PendingUpload;
    let arrived = image(c.id, t0() - secs(9000), "pending-arrived");
    for img in [&old, &older, &recent, &arrived] {
        store.insert_image(&new(img), false).await.unwrap();
    }
    let stale = store.pending_uploads(t0() - secs(60), 100).await.unwrap();
    let ids: Vec<_> = stale
        .iter()
        .filter(|i| i.customer_id == c.id)
        .map(|i| i.id)
        .collect();
    assert_eq!(
        ids,
        vec![older.id, old.id],
        "only waiting uploads, oldest first"
    );
}

pub async fn expired_images_oldest_first(store: &dyn MetadataStore) {
    let (c, _) = customer("expiry");
    let old = image(c.id, t0() - chrono::Duration::days(30), "exp-old");
    let fresh = image(c.id, t0(), "exp-fresh");
    for img in [&old, &fresh] {
        store.insert_image(&new(img), false).await.unwrap();
    }
    let expired = store.expired_images(t0(), 1000).await.unwrap();
    assert!(expired.iter().any(|i| i.id == old.id));
    assert!(
        expired.iter().all(|i| i.id != fresh.id),
        "nothing deleted early"
    );
    assert!(
        expired
            .windows(2)
            .all(|w| w[0].expires_at <= w[1].expires_at)
    );
}

pub async fn queue_leases_retries_and_dead_letters(
    store: &dyn MetadataStore,
    queue: &dyn WorkQueue,
) {
    let (c, _) = customer("queue");
    let img = image(c.id, t0(), "queue-1");
    store.insert_image(&new(&img), true).await.unwrap();
    assert_eq!(
        queue.depth().await.unwrap().unwrap(),
        1,
        "insert with enqueue writes the job"
    );

    let lease = Duration::from_secs(30);
    let jobs = queue.lease(t0(), lease, 10).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!((jobs[0].image_id, jobs[0].attempts), (img.id, 1));
    assert!(
        queue
            .lease(t0() + secs(1), lease, 10)
            .await
            .unwrap()
            .is_empty(),
        "leased work is invisible"
    );

    let again = queue.lease(t0() + secs(31), lease, 10).await.unwrap();
    assert_eq!(again.len(), 1, "an expired lease is handed out again");
    assert_eq!(again[0].attempts, 2);

    queue
        .retry_at(again[0].id, "boom", t0() + secs(100))
        .await
        .unwrap();
    assert!(
        queue
            .lease(t0() + secs(99), lease, 10)
            .await
            .unwrap()
            .is_empty(),
        "backoff is honoured"
    );
    let third = queue.lease(t0() + secs(100), lease, 10).await.unwrap();
    assert_eq!(third.len(), 1);

    queue
        .dead_letter(third[0].id, "gave up", t0() + secs(101))
        .await
        .unwrap();
    assert_eq!(queue.depth().await.unwrap().unwrap(), 0);
    let dead = queue.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (
            dead[0].image_id,
            dead[0].attempts,
            dead[0].last_error.as_str()
        ),
        (img.id, 3, "gave up")
    );

    assert!(queue.redrive(dead[0].id, t0() + secs(200)).await.unwrap());
    assert!(
        !queue.redrive(dead[0].id, t0() + secs(200)).await.unwrap(),
        "only dead jobs are re-driven"
    );
    let redriven = queue.lease(t0() + secs(200), lease, 10).await.unwrap();
    assert_eq!(
        redriven[0].attempts, 1,
        "a re-driven job starts counting again"
    );

    assert_eq!(queue.release_leases().await.unwrap(), 1);
    let released = queue.lease(t0() + secs(201), lease, 10).await.unwrap();
    queue.complete(released[0].id).await.unwrap();
    assert_eq!(queue.depth().await.unwrap(), Some(0));
}

/// Expands to one `#[tokio::test]` per conformance check, each on a fresh backend made by
/// `$make` (an expression yielding something that implements both traits). With
/// `store_only: $make`, only the [`MetadataStore`] checks run, for backends whose queue lives
/// elsewhere (Firestore, whose work arrives through Pub/Sub).
#[macro_export]
macro_rules! metadata_conformance {
    (store_only: $make:expr) => {
        $crate::metadata_conformance!(@store $make;
            customers_and_keys, service_keys_have_roles, keys_are_found_by_id,
            delete_customer_cascades,
            images_round_trip_with_microseconds,
            duplicates_are_per_customer_and_live_only, records_without_bytes_are_never_duplicates,
            concurrent_inserts_of_one_customer,
            idempotency_keys_replay, answers_are_remembered_once, customer_emails_are_unique,
            listing_pages_newest_first, expired_images_oldest_first,
            every_customer_listed_for_the_live_views,
            pending_uploads_oldest_first, every_change_writes_one_event, leases_have_one_holder,
            run_history_pages_newest_first, open_runs_are_listed_until_they_end,
            backfills_round_trip_and_age_out, sessions_are_found_listed_and_ended,
            heartbeats_replace_each_other_and_age_out);
    };
    ($make:expr) => {
        $crate::metadata_conformance!(@store $make;
            customers_and_keys, service_keys_have_roles, keys_are_found_by_id,
            delete_customer_cascades,
            images_round_trip_with_microseconds,
            duplicates_are_per_customer_and_live_only, records_without_bytes_are_never_duplicates,
            concurrent_inserts_of_one_customer,
            idempotency_keys_replay, answers_are_remembered_once, customer_emails_are_unique,
            listing_pages_newest_first, expired_images_oldest_first,
            every_customer_listed_for_the_live_views,
            pending_uploads_oldest_first, every_change_writes_one_event, leases_have_one_holder,
            run_history_pages_newest_first, open_runs_are_listed_until_they_end,
            backfills_round_trip_and_age_out, sessions_are_found_listed_and_ended,
            heartbeats_replace_each_other_and_age_out);
        #[tokio::test]
        async fn queue_leases_retries_and_dead_letters() {
            let backend = $make;
            $crate::conformance::queue_leases_retries_and_dead_letters(&backend, &backend).await;
        }
    };
    (@store $make:expr; $($check:ident),*) => {
        $(
            #[tokio::test]
            async fn $check() {
                let backend = $make;
                $crate::conformance::$check(&backend).await;
            }
        )*
    };
}
