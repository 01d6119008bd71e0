//! [`MetadataStore`] on SQLite: each method one transaction on the one connection.

use async_trait::async_trait;
use imagelake_core::{
    CustomerId, ImageId, KeyId, Timestamp,
    clock::to_micros,
    events::{Event, EventType},
    records::{AnyKey, ApiKey, Customer, Image, ServiceKey},
};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use uuid::Uuid;

use crate::{
    IdempotencyRecord, ImageQuery, InsertOutcome, MetadataStore, NewImage, Removal, Result,
    StoreError,
};

use super::{
    SqliteStore, backend,
    queue::enqueue_row,
    rows::{
        IMAGE_COLUMNS, KEY_COLUMNS, SERVICE_KEY_COLUMNS, customer_from_row, idempotency_from_row,
        image_from_row, key_from_row, parse_id, service_key_from_row, to_json,
    },
};

/// Refuses an email that a customer other than `customer` has, case aside.
pub(super) fn check_email_free(conn: &Connection, customer: &Customer) -> Result<()> {
    let taken = conn
        .prepare("SELECT 1 FROM customers WHERE email_key = ?1 AND id != ?2")?
        .exists(params![customer.email_key(), customer.id.to_string()])?;
    if taken {
        return Err(StoreError::AlreadyExists(
            "a customer with this email".to_owned(),
        ));
    }
    Ok(())
}

pub(super) fn insert_key_row(conn: &Connection, key: &ApiKey) -> rusqlite::Result<()> {
    conn.execute(
        &format!("INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
        params![
            key.id.to_string(),
            key.customer_id.to_string(),
            key.prefix,
            key.hash,
            to_micros(key.created_at),
            key.revoked_at.map(to_micros),
            key.wire.as_ref().map(|w| &w.scram),
            key.wire.as_ref().map(|w| &w.md5)
        ],
    )?;
    Ok(())
}

pub(super) fn live_duplicate(
    conn: &Connection,
    customer: CustomerId,
    sha256: &str,
    now: Timestamp,
) -> rusqlite::Result<Option<Image>> {
    conn.query_row(
        &format!(
            "SELECT {IMAGE_COLUMNS} FROM images WHERE customer_id = ?1 AND sha256 = ?2 AND expires_at > ?3 \
             ORDER BY uploaded_at LIMIT 1"
        ),
        params![customer.to_string(), sha256, to_micros(now)],
        image_from_row,
    )
    .optional()
}

pub(super) fn idempotent(
    conn: &Connection,
    customer: CustomerId,
    key: &str,
) -> rusqlite::Result<Option<IdempotencyRecord>> {
    conn.query_row(
        "SELECT key, request_hash, status, body, created_at FROM idempotency WHERE customer_id = ?1 AND key = ?2",
        params![customer.to_string(), key],
        idempotency_from_row,
    )
    .optional()
}

/// Writes `event` into the outbox; an event written before (a retried change) is left as it is.
pub(super) fn record_event(conn: &Connection, event: &Event) -> Result<()> {
    let payload = serde_json::to_string(event).map_err(backend)?;
    conn.execute(
        "INSERT OR IGNORE INTO events (event_id, customer_id, occurred_at, payload) VALUES (?1, ?2, ?3, ?4)",
        params![
            event.event_id.to_string(),
            event.customer_id.to_string(),
            to_micros(event.occurred_at),
            payload
        ],
    )?;
    Ok(())
}

pub(super) fn customer_row(
    conn: &Connection,
    id: CustomerId,
) -> rusqlite::Result<Option<Customer>> {
    conn.query_row(
        "SELECT id, name, email, plan, created_at, updated_at FROM customers WHERE id = ?1",
        [id.to_string()],
        customer_from_row,
    )
    .optional()
}

pub(super) fn image_row(conn: &Connection, id: ImageId) -> rusqlite::Result<Option<Image>> {
    conn.query_row(
        &format!("SELECT {IMAGE_COLUMNS} FROM images WHERE id = ?1"),
        [id.to_string()],
        image_from_row,
    )
    .optional()
}

/// Deletes a record as read in this transaction, with its queued work, and writes its removal
/// event.
pub(super) fn delete_image_row(
    conn: &Connection,
    image: &Image,
    removal: Removal,
    at: Timestamp,
) -> Result<()> {
    conn.execute(
        "DELETE FROM jobs WHERE image_id = ?1",
        [image.id.to_string()],
    )?;
    conn.execute("DELETE FROM images WHERE id = ?1", [image.id.to_string()])?;
    record_event(conn, &Event::image(removal.event_type(), image, at))
}

#[async_trait]
impl MetadataStore for SqliteStore {
    async fn insert_customer(&self, customer: &Customer, key: &ApiKey) -> Result<()> {
        let (c, key) = (customer.clone(), key.clone());
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if customer_row(&tx, c.id)?.is_none() {
                check_email_free(&tx, &c)?;
            }
            let inserted = tx.execute(
                "INSERT OR IGNORE INTO customers (id, name, email, email_key, plan, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![c.id.to_string(), c.name, c.email, c.email_key(), c.plan, to_micros(c.created_at), to_micros(c.updated_at)],
            )?;
            if inserted == 0 {
                return Err(StoreError::AlreadyExists(format!("customer {}", c.id)));
            }
            insert_key_row(&tx, &key)?;
            record_event(&tx, &Event::customer(EventType::CustomerCreated, &c, c.created_at))?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn get_customer(&self, id: CustomerId) -> Result<Option<Customer>> {
        self.call(move |conn| Ok(customer_row(conn, id)?)).await
    }

    async fn list_customers(
        &self,
        after: Option<(Timestamp, CustomerId)>,
        limit: usize,
    ) -> Result<Vec<Customer>> {
        // Without a cursor, one past the newest customer possible.
        let (at, id) = after.map_or((i64::MAX, String::new()), |(at, id)| {
            (to_micros(at), id.to_string())
        });
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, name, email, plan, created_at, updated_at FROM customers
                 WHERE created_at < ?1 OR (created_at = ?1 AND id < ?2)
                 ORDER BY created_at DESC, id DESC LIMIT ?3",
            )?;
            let rows = stmt
                .query_map(params![at, id, limit as i64], customer_from_row)?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
        .await
    }

    async fn update_customer(&self, customer: &Customer) -> Result<()> {
        let c = customer.clone();
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let n = tx.execute(
                "UPDATE customers SET name = ?2, email = ?3, email_key = ?4, plan = ?5, updated_at = ?6 WHERE id = ?1",
                params![c.id.to_string(), c.name, c.email, c.email_key(), c.plan, to_micros(c.updated_at)],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            check_email_free(&tx, &c)?;
            record_event(&tx, &Event::customer(EventType::CustomerUpdated, &c, c.updated_at))?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn delete_customer(&self, id: CustomerId, at: Timestamp) -> Result<()> {
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some(customer) = customer_row(&tx, id)? else {
                return Err(StoreError::NotFound);
            };
            let images: Vec<Image> = tx
                .prepare(&format!(
                    "SELECT {IMAGE_COLUMNS} FROM images WHERE customer_id = ?1"
                ))?
                .query_map([id.to_string()], image_from_row)?
                .collect::<rusqlite::Result<_>>()?;
            for image in &images {
                delete_image_row(&tx, image, Removal::Deleted, at)?;
            }
            for table in ["idempotency", "jobs", "api_keys"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE customer_id = ?1"),
                    [id.to_string()],
                )?;
            }
            tx.execute("DELETE FROM customers WHERE id = ?1", [id.to_string()])?;
            record_event(
                &tx,
                &Event::customer(EventType::CustomerDeleted, &customer, at),
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn insert_key(&self, key: &ApiKey) -> Result<()> {
        let key = key.clone();
        self.call(move |conn| {
            let exists: bool = conn.query_row(
                "SELECT EXISTS(SELECT 1 FROM customers WHERE id = ?1)",
                [key.customer_id.to_string()],
                |r| r.get(0),
            )?;
            if !exists {
                return Err(StoreError::NotFound);
            }
            Ok(insert_key_row(conn, &key)?)
        })
        .await
    }

    async fn list_keys(&self, customer: CustomerId) -> Result<Vec<ApiKey>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE customer_id = ?1 ORDER BY created_at, id"
            ))?;
            let keys = stmt
                .query_map([customer.to_string()], key_from_row)?
                .collect::<rusqlite::Result<_>>()?;
            Ok(keys)
        })
        .await
    }

    async fn revoke_key(&self, customer: CustomerId, key: KeyId, at: Timestamp) -> Result<()> {
        self.call(move |conn| {
            let n = conn.execute(
                "UPDATE api_keys SET revoked_at = ?3 WHERE id = ?1 AND customer_id = ?2 AND revoked_at IS NULL",
                params![key.to_string(), customer.to_string(), to_micros(at)],
            )?;
            if n == 0 { Err(StoreError::NotFound) } else { Ok(()) }
        })
        .await
    }

    async fn find_key(&self, hash: &str) -> Result<Option<ApiKey>> {
        let hash = hash.to_owned();
        self.call(move |conn| {
            Ok(conn
                .query_row(
                    &format!(
                        "SELECT {KEY_COLUMNS} FROM api_keys WHERE hash = ?1 AND revoked_at IS NULL"
                    ),
                    [hash],
                    key_from_row,
                )
                .optional()?)
        })
        .await
    }

    async fn insert_service_key(&self, key: &ServiceKey) -> Result<()> {
        let key = key.clone();
        self.call(move |conn| {
            conn.execute(
                &format!("INSERT INTO service_keys ({SERVICE_KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
                params![
                    key.key_id.to_string(),
                    key.role.as_str(),
                    key.name,
                    key.prefix,
                    key.hash,
                    to_micros(key.created_at),
                    key.revoked_at.map(to_micros),
                    key.wire.as_ref().map(|w| &w.scram),
                    key.wire.as_ref().map(|w| &w.md5)
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn list_service_keys(&self) -> Result<Vec<ServiceKey>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {SERVICE_KEY_COLUMNS} FROM service_keys ORDER BY created_at, id"
            ))?;
            let keys = stmt
                .query_map([], service_key_from_row)?
                .collect::<rusqlite::Result<_>>()?;
            Ok(keys)
        })
        .await
    }

    async fn revoke_service_key(&self, key: KeyId, at: Timestamp) -> Result<()> {
        self.call(move |conn| {
            let n = conn.execute(
                "UPDATE service_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![key.to_string(), to_micros(at)],
            )?;
            if n == 0 {
                Err(StoreError::NotFound)
            } else {
                Ok(())
            }
        })
        .await
    }

    async fn find_service_key(&self, hash: &str) -> Result<Option<ServiceKey>> {
        let hash = hash.to_owned();
        self.call(move |conn| {
            Ok(conn
                .query_row(
                    &format!("SELECT {SERVICE_KEY_COLUMNS} FROM service_keys WHERE hash = ?1 AND revoked_at IS NULL"),
                    [hash],
                    service_key_from_row,
                )
                .optional()?)
        })
        .await
    }

    async fn find_key_by_id(&self, id: KeyId) -> Result<Option<AnyKey>> {
        self.call(move |conn| {
            let id = id.to_string();
            let customer = conn
                .query_row(
                    &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?1 AND revoked_at IS NULL"),
                    [&id],
                    key_from_row,
                )
                .optional()?;
            if let Some(key) = customer {
                return Ok(Some(AnyKey::Customer(key)));
            }
            let service = conn
                .query_row(
                    &format!("SELECT {SERVICE_KEY_COLUMNS} FROM service_keys WHERE id = ?1 AND revoked_at IS NULL"),
                    [&id],
                    service_key_from_row,
                )
                .optional()?;
            Ok(service.map(AnyKey::Service))
        })
        .await
    }

    async fn record_event(&self, event: &Event) -> Result<()> {
        let event = event.clone();
        self.call(move |conn| record_event(conn, &event)).await
    }

    async fn live_key_hashes(&self, limit: usize) -> Result<Vec<String>> {
        self.call(move |conn| {
            let mut stmt =
                conn.prepare("SELECT hash FROM api_keys WHERE revoked_at IS NULL LIMIT ?1")?;
            let hashes = stmt
                .query_map([limit as i64], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(hashes)
        })
        .await
    }

    async fn insert_image(&self, new: &NewImage, enqueue: bool) -> Result<InsertOutcome> {
        let new = new.clone();
        self.call(move |conn| {
            let img = &new.image;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(idem) = &new.idempotency
                && let Some(previous) = idempotent(&tx, img.customer_id, &idem.key)?
            {
                return Ok(InsertOutcome::Replay(previous));
            }
            // A record made before its bytes arrive (a signed-URL upload) has no hash to compare yet.
            if !img.sha256.is_empty()
                && let Some(existing) = live_duplicate(&tx, img.customer_id, &img.sha256, img.uploaded_at)?
            {
                return Ok(InsertOutcome::Duplicate(Box::new(existing)));
            }
            tx.execute(
                &format!("INSERT INTO images ({IMAGE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"),
                params![
                    img.id.to_string(),
                    img.customer_id.to_string(),
                    img.status.as_str(),
                    img.bytes as i64,
                    img.sha256,
                    img.content_type,
                    img.filename,
                    to_micros(img.uploaded_at),
                    to_micros(img.expires_at),
                    to_json(&img.facts),
                    to_json(&img.error),
                    img.processed_at.map(to_micros),
                    img.generation,
                    img.source.map(|s| s.as_str()),
                ],
            )?;
            if let Some(idem) = &new.idempotency {
                tx.execute(
                    "INSERT INTO idempotency (customer_id, key, request_hash, status, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![img.customer_id.to_string(), idem.key, idem.request_hash, idem.status, idem.body, to_micros(idem.created_at)],
                )?;
            }
            if enqueue {
                enqueue_row(&tx, img.id, img.customer_id, img.uploaded_at)?;
            }
            record_event(&tx, &Event::image(EventType::ImageReceived, img, img.uploaded_at))?;
            tx.commit()?;
            Ok(InsertOutcome::Created)
        })
        .await
    }

    async fn find_idempotent(
        &self,
        customer: CustomerId,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>> {
        let key = key.to_owned();
        self.call(move |conn| Ok(idempotent(conn, customer, &key)?))
            .await
    }

    async fn remember_answer(
        &self,
        customer: CustomerId,
        record: &IdempotencyRecord,
    ) -> Result<Option<IdempotencyRecord>> {
        let record = record.clone();
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(first) = idempotent(&tx, customer, &record.key)? {
                return Ok(Some(first));
            }
            tx.execute(
                "INSERT INTO idempotency (customer_id, key, request_hash, status, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![customer.to_string(), record.key, record.request_hash, record.status, record.body, to_micros(record.created_at)],
            )?;
            tx.commit()?;
            Ok(None)
        })
        .await
    }

    async fn find_live_duplicate(
        &self,
        customer: CustomerId,
        sha256: &str,
        now: Timestamp,
    ) -> Result<Option<Image>> {
        let sha256 = sha256.to_owned();
        self.call(move |conn| Ok(live_duplicate(conn, customer, &sha256, now)?))
            .await
    }

    async fn get_image(&self, id: ImageId) -> Result<Option<Image>> {
        self.call(move |conn| Ok(image_row(conn, id)?)).await
    }

    async fn list_images(
        &self,
        customer: Option<CustomerId>,
        query: &ImageQuery,
    ) -> Result<Vec<Image>> {
        let q = query.clone();
        self.call(move |conn| {
            let (after_ts, after_id) = match q.after {
                Some(c) => (Some(to_micros(c.uploaded_at)), Some(c.id.to_string())),
                None => (None, None),
            };
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {IMAGE_COLUMNS} FROM images
                 WHERE (?1 IS NULL OR customer_id = ?1) AND expires_at > ?2
                   AND (?3 IS NULL OR uploaded_at >= ?3)
                   AND (?4 IS NULL OR uploaded_at < ?4)
                   AND (?5 IS NULL OR uploaded_at < ?5 OR (uploaded_at = ?5 AND id < ?6))
                 ORDER BY uploaded_at DESC, id DESC
                 LIMIT ?7"
            ))?;
            let rows = stmt
                .query_map(
                    params![
                        customer.map(|c| c.to_string()),
                        to_micros(q.now),
                        q.since.map(to_micros),
                        q.until.map(to_micros),
                        after_ts,
                        after_id,
                        q.limit as i64
                    ],
                    image_from_row,
                )?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
        .await
    }

    async fn customer_image_ids(&self, customer: CustomerId) -> Result<Vec<ImageId>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare("SELECT id FROM images WHERE customer_id = ?1")?;
            let ids = stmt
                .query_map([customer.to_string()], |r| parse_id(r.get(0)?))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(ids)
        })
        .await
    }

    async fn update_image(&self, image: &Image) -> Result<()> {
        let img = image.clone();
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let n = tx.execute(
                "UPDATE images SET status = ?2, facts = ?3, error = ?4, processed_at = ?5, \
                 bytes = ?6, sha256 = ?7, content_type = ?8, generation = ?9 WHERE id = ?1",
                params![
                    img.id.to_string(),
                    img.status.as_str(),
                    to_json(&img.facts),
                    to_json(&img.error),
                    img.processed_at.map(to_micros),
                    img.bytes as i64,
                    img.sha256,
                    img.content_type,
                    img.generation
                ],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            if let Some(settled) = EventType::settled_as(img.status) {
                let at = img.processed_at.unwrap_or(img.uploaded_at);
                record_event(&tx, &Event::image(settled, &img, at))?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn delete_image(&self, image: &Image, removal: Removal, at: Timestamp) -> Result<bool> {
        let id = image.id;
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some(image) = image_row(&tx, id)? else {
                return Ok(false);
            };
            delete_image_row(&tx, &image, removal, at)?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn pending_uploads(&self, before: Timestamp, limit: usize) -> Result<Vec<Image>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {IMAGE_COLUMNS} FROM images WHERE status = 'pending_upload' AND uploaded_at < ?1 \
                 ORDER BY uploaded_at LIMIT ?2"
            ))?;
            let rows = stmt
                .query_map(params![to_micros(before), limit as i64], image_from_row)?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
        .await
    }

    async fn expired_images(&self, now: Timestamp, limit: usize) -> Result<Vec<Image>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {IMAGE_COLUMNS} FROM images WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2"
            ))?;
            let rows = stmt
                .query_map(params![to_micros(now), limit as i64], image_from_row)?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
        .await
    }

    async fn purge_idempotency(&self, before: Timestamp) -> Result<u64> {
        self.call(move |conn| {
            Ok(conn.execute(
                "DELETE FROM idempotency WHERE created_at < ?1",
                [to_micros(before)],
            )? as u64)
        })
        .await
    }

    async fn unpublished_events(&self, limit: usize) -> Result<Vec<Event>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT payload FROM events WHERE published_at IS NULL ORDER BY seq LIMIT ?1",
            )?;
            let payloads: Vec<String> = stmt
                .query_map([limit as i64], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            payloads
                .iter()
                .map(|p| serde_json::from_str(p).map_err(backend))
                .collect()
        })
        .await
    }

    async fn mark_published(&self, ids: &[Uuid], at: Timestamp) -> Result<()> {
        let ids = ids.to_vec();
        self.call(move |conn| {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "UPDATE events SET published_at = ?2 WHERE event_id = ?1 AND published_at IS NULL",
                )?;
                for id in &ids {
                    stmt.execute(params![id.to_string(), to_micros(at)])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn purge_events(&self, before: Timestamp) -> Result<u64> {
        self.call(move |conn| {
            Ok(conn.execute(
                "DELETE FROM events WHERE occurred_at < ?1",
                [to_micros(before)],
            )? as u64)
        })
        .await
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.call(move |conn| {
            let n = conn.execute(
                "INSERT INTO leases (name, holder, until) VALUES (?1, ?2, ?4)
                 ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, until = excluded.until
                 WHERE leases.holder = excluded.holder OR leases.until <= ?3",
                params![name, holder, to_micros(now), to_micros(until)],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn ping(&self) -> Result<()> {
        self.call(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }
}
