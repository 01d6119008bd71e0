//! The embedded default: one SQLite file in WAL mode holding records and the work queue.
//!
//! One connection behind a mutex, used from `spawn_blocking`: SQLite serialises writers anyway,
//! each statement takes microseconds, and a single connection makes every "check, then write"
//! (duplicates, idempotency keys) a plain `BEGIN IMMEDIATE` transaction with no race.
//! `synchronous=FULL` makes every commit durable before the API answers 201.
//!
//! The `events` table is the outbox and, in the embedded deployment, the event log itself: rows
//! are numbered in commit order (`seq`), an `event_id` is written once (`INSERT OR IGNORE`), and
//! `published_at` records delivery to Kafka when a publisher runs.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use imagelake_core::{
    CustomerId, ImageId, JobId, KeyId, Timestamp,
    clock::{from_micros, to_micros},
    events::{Event, EventType},
    records::{ApiKey, Customer, DeadLetter, ErrorInfo, Image, ImageStatus, Job, ProcessedFacts},
};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use uuid::Uuid;

use crate::{
    IdempotencyRecord, ImageQuery, InsertOutcome, MetadataStore, NewImage, Removal, Result,
    StoreError, WorkQueue,
};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS customers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    email_key TEXT,
    plan TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    prefix TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX IF NOT EXISTS api_keys_by_customer ON api_keys(customer_id);
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    status TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    content_type TEXT NOT NULL,
    filename TEXT,
    uploaded_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    facts TEXT,
    error TEXT,
    processed_at INTEGER,
    generation INTEGER
);
CREATE INDEX IF NOT EXISTS images_by_customer ON images(customer_id, uploaded_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS images_by_sha ON images(customer_id, sha256);
CREATE INDEX IF NOT EXISTS images_by_expiry ON images(expires_at);
CREATE TABLE IF NOT EXISTS idempotency (
    customer_id TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (customer_id, key)
);
CREATE INDEX IF NOT EXISTS idempotency_by_age ON idempotency(created_at);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    image_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    available_at INTEGER NOT NULL,
    leased_until INTEGER,
    last_error TEXT,
    dead_at INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs(dead_at, available_at);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    customer_id TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    payload TEXT NOT NULL,
    published_at INTEGER
);
CREATE INDEX IF NOT EXISTS events_unpublished ON events(seq) WHERE published_at IS NULL;
CREATE INDEX IF NOT EXISTS events_by_time ON events(occurred_at);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until INTEGER NOT NULL
);
"#;

/// Brings a database made by an earlier version up to [`SCHEMA`].
fn add_missing_columns(conn: &Connection) -> rusqlite::Result<()> {
    let has_column = |table: &str, column: &str| {
        conn.prepare(&format!(
            "SELECT 1 FROM pragma_table_info('{table}') WHERE name = '{column}'"
        ))?
        .exists([])
    };
    if !has_column("images", "generation")? {
        conn.execute("ALTER TABLE images ADD COLUMN generation INTEGER", [])?;
    }
    if !has_column("customers", "email_key")? {
        conn.execute("ALTER TABLE customers ADD COLUMN email_key TEXT", [])?;
    }
    // Keys are folded in Rust (Unicode lower case), the same on every backend.
    let unkeyed: Vec<Customer> = conn
        .prepare("SELECT id, name, email, plan, created_at, updated_at FROM customers WHERE email_key IS NULL")?
        .query_map([], customer_from_row)?
        .collect::<rusqlite::Result<_>>()?;
    for customer in unkeyed {
        conn.execute(
            "UPDATE customers SET email_key = ?2 WHERE id = ?1",
            params![customer.id.to_string(), customer.email_key()],
        )?;
    }
    conn.execute(
        "CREATE INDEX IF NOT EXISTS customers_by_email ON customers(email_key)",
        [],
    )?;
    Ok(())
}

/// Refuses an email that a customer other than `customer` has, case aside.
fn check_email_free(conn: &Connection, customer: &Customer) -> Result<()> {
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

/// Image columns in the order [`image_from_row`] reads them.
const IMAGE_COLUMNS: &str = "id, customer_id, status, bytes, sha256, content_type, filename, \
                             uploaded_at, expires_at, facts, error, processed_at, generation";

/// One row of the local event log.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedEvent {
    /// Position in commit order; read on after the last one seen.
    pub seq: u64,
    pub published_at: Option<Timestamp>,
    pub event: Event,
}

/// Records and work queue in one SQLite database.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        backend(e)
    }
}

fn parse_id<T: std::str::FromStr>(s: String) -> rusqlite::Result<T> {
    s.parse()
        .map_err(|_| rusqlite::Error::InvalidColumnType(0, s, rusqlite::types::Type::Text))
}

fn json_column<T: serde::de::DeserializeOwned>(raw: Option<String>) -> rusqlite::Result<Option<T>> {
    raw.map(|s| serde_json::from_str(&s))
        .transpose()
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })
}

fn image_from_row(row: &Row<'_>) -> rusqlite::Result<Image> {
    let status: String = row.get(2)?;
    Ok(Image {
        id: parse_id(row.get(0)?)?,
        customer_id: parse_id(row.get(1)?)?,
        status: ImageStatus::parse(&status).unwrap_or(ImageStatus::Received),
        bytes: row.get::<_, i64>(3)? as u64,
        sha256: row.get(4)?,
        content_type: row.get(5)?,
        filename: row.get(6)?,
        uploaded_at: from_micros(row.get(7)?),
        expires_at: from_micros(row.get(8)?),
        facts: json_column::<ProcessedFacts>(row.get(9)?)?,
        error: json_column::<ErrorInfo>(row.get(10)?)?,
        processed_at: row.get::<_, Option<i64>>(11)?.map(from_micros),
        generation: row.get(12)?,
    })
}

fn customer_from_row(row: &Row<'_>) -> rusqlite::Result<Customer> {
    Ok(Customer {
        id: parse_id(row.get(0)?)?,
        name: row.get(1)?,
        email: row.get(2)?,
        plan: row.get(3)?,
        created_at: from_micros(row.get(4)?),
        updated_at: from_micros(row.get(5)?),
    })
}

fn key_from_row(row: &Row<'_>) -> rusqlite::Result<ApiKey> {
    Ok(ApiKey {
        id: parse_id(row.get(0)?)?,
        customer_id: parse_id(row.get(1)?)?,
        prefix: row.get(2)?,
        hash: row.get(3)?,
        created_at: from_micros(row.get(4)?),
        revoked_at: row.get::<_, Option<i64>>(5)?.map(from_micros),
    })
}

fn idempotency_from_row(row: &Row<'_>) -> rusqlite::Result<IdempotencyRecord> {
    Ok(IdempotencyRecord {
        key: row.get(0)?,
        request_hash: row.get(1)?,
        status: row.get(2)?,
        body: row.get(3)?,
        created_at: from_micros(row.get(4)?),
    })
}

fn to_json<T: serde::Serialize>(value: &Option<T>) -> Option<String> {
    value.as_ref().and_then(|v| serde_json::to_string(v).ok())
}

fn insert_key_row(conn: &Connection, key: &ApiKey) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO api_keys (id, customer_id, prefix, hash, created_at, revoked_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            key.id.to_string(),
            key.customer_id.to_string(),
            key.prefix,
            key.hash,
            to_micros(key.created_at),
            key.revoked_at.map(to_micros)
        ],
    )?;
    Ok(())
}

fn live_duplicate(
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

fn idempotent(
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
fn record_event(conn: &Connection, event: &Event) -> Result<()> {
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

fn customer_row(conn: &Connection, id: CustomerId) -> rusqlite::Result<Option<Customer>> {
    conn.query_row(
        "SELECT id, name, email, plan, created_at, updated_at FROM customers WHERE id = ?1",
        [id.to_string()],
        customer_from_row,
    )
    .optional()
}

fn image_row(conn: &Connection, id: ImageId) -> rusqlite::Result<Option<Image>> {
    conn.query_row(
        &format!("SELECT {IMAGE_COLUMNS} FROM images WHERE id = ?1"),
        [id.to_string()],
        image_from_row,
    )
    .optional()
}

/// Deletes a record as read in this transaction, with its queued work, and writes its removal
/// event.
fn delete_image_row(
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

fn enqueue_row(
    conn: &Connection,
    image: ImageId,
    customer: CustomerId,
    now: Timestamp,
) -> rusqlite::Result<JobId> {
    let id = JobId::new();
    conn.execute(
        "INSERT INTO jobs (id, image_id, customer_id, available_at) VALUES (?1, ?2, ?3, ?4)",
        params![
            id.to_string(),
            image.to_string(),
            customer.to_string(),
            to_micros(now)
        ],
    )?;
    Ok(id)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        Self::init(Connection::open(path)?)
    }

    /// A private in-memory database, for tests.
    pub fn in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self> {
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(SCHEMA)?;
        add_missing_columns(&conn)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Up to `limit` events of the log after position `after`, oldest first, published or not.
    pub async fn event_log(&self, after: u64, limit: usize) -> Result<Vec<LoggedEvent>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, published_at, payload FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows: Vec<(i64, Option<i64>, String)> = stmt
                .query_map(params![after as i64, limit as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            rows.into_iter()
                .map(|(seq, published_at, payload)| {
                    Ok(LoggedEvent {
                        seq: seq as u64,
                        published_at: published_at.map(from_micros),
                        event: serde_json::from_str(&payload).map_err(backend)?,
                    })
                })
                .collect()
        })
        .await
    }

    /// Runs `f` on the connection off the async runtime.
    async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(backend)?
    }
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
            let mut stmt = conn.prepare(
                "SELECT id, customer_id, prefix, hash, created_at, revoked_at FROM api_keys WHERE customer_id = ?1 ORDER BY created_at, id",
            )?;
            let keys = stmt.query_map([customer.to_string()], key_from_row)?.collect::<rusqlite::Result<_>>()?;
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
                    "SELECT id, customer_id, prefix, hash, created_at, revoked_at FROM api_keys WHERE hash = ?1 AND revoked_at IS NULL",
                    [hash],
                    key_from_row,
                )
                .optional()?)
        })
        .await
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
                &format!("INSERT INTO images ({IMAGE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"),
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

    async fn list_images(&self, customer: CustomerId, query: &ImageQuery) -> Result<Vec<Image>> {
        let q = query.clone();
        self.call(move |conn| {
            let (after_ts, after_id) = match q.after {
                Some(c) => (Some(to_micros(c.uploaded_at)), Some(c.id.to_string())),
                None => (None, None),
            };
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {IMAGE_COLUMNS} FROM images
                 WHERE customer_id = ?1 AND expires_at > ?2
                   AND (?3 IS NULL OR uploaded_at >= ?3)
                   AND (?4 IS NULL OR uploaded_at < ?4)
                   AND (?5 IS NULL OR uploaded_at < ?5 OR (uploaded_at = ?5 AND id < ?6))
                 ORDER BY uploaded_at DESC, id DESC
                 LIMIT ?7"
            ))?;
            let rows = stmt
                .query_map(
                    params![
                        customer.to_string(),
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

#[async_trait]
impl WorkQueue for SqliteStore {
    async fn enqueue(&self, image: ImageId, customer: CustomerId, now: Timestamp) -> Result<JobId> {
        self.call(move |conn| Ok(enqueue_row(conn, image, customer, now)?))
            .await
    }

    async fn lease(&self, now: Timestamp, lease_for: Duration, max: usize) -> Result<Vec<Job>> {
        let until = to_micros(now) + i64::try_from(lease_for.as_micros()).unwrap_or(i64::MAX / 2);
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "UPDATE jobs SET attempts = attempts + 1, leased_until = ?2
                 WHERE id IN (
                     SELECT id FROM jobs
                     WHERE dead_at IS NULL AND available_at <= ?1 AND (leased_until IS NULL OR leased_until <= ?1)
                     ORDER BY available_at LIMIT ?3)
                 RETURNING id, image_id, customer_id, attempts",
            )?;
            let jobs = stmt
                .query_map(params![to_micros(now), until, max as i64], |r| {
                    Ok(Job {
                        id: parse_id(r.get(0)?)?,
                        image_id: parse_id(r.get(1)?)?,
                        customer_id: parse_id(r.get(2)?)?,
                        attempts: r.get(3)?,
                        generation: None,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(jobs)
        })
        .await
    }

    async fn complete(&self, job: JobId) -> Result<()> {
        self.call(move |conn| {
            conn.execute("DELETE FROM jobs WHERE id = ?1", [job.to_string()])?;
            Ok(())
        })
        .await
    }

    async fn retry_at(&self, job: JobId, error: &str, at: Timestamp) -> Result<()> {
        let error = error.to_owned();
        self.call(move |conn| {
            conn.execute(
                "UPDATE jobs SET leased_until = NULL, available_at = ?2, last_error = ?3 WHERE id = ?1",
                params![job.to_string(), to_micros(at), error],
            )?;
            Ok(())
        })
        .await
    }

    async fn dead_letter(&self, job: JobId, error: &str, now: Timestamp) -> Result<()> {
        let error = error.to_owned();
        self.call(move |conn| {
            conn.execute(
                "UPDATE jobs SET leased_until = NULL, dead_at = ?2, last_error = ?3 WHERE id = ?1",
                params![job.to_string(), to_micros(now), error],
            )?;
            Ok(())
        })
        .await
    }

    async fn depth(&self) -> Result<Option<u64>> {
        self.call(|conn| {
            Ok(Some(
                conn.query_row("SELECT COUNT(*) FROM jobs WHERE dead_at IS NULL", [], |r| {
                    r.get::<_, i64>(0)
                })? as u64,
            ))
        })
        .await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT id, image_id, customer_id, attempts, COALESCE(last_error, ''), dead_at FROM jobs
                 WHERE dead_at IS NOT NULL ORDER BY dead_at DESC LIMIT ?1",
            )?;
            let rows = stmt
                .query_map([limit as i64], |r| {
                    Ok(DeadLetter {
                        id: parse_id(r.get(0)?)?,
                        image_id: parse_id(r.get(1)?)?,
                        customer_id: parse_id(r.get(2)?)?,
                        attempts: r.get(3)?,
                        last_error: r.get(4)?,
                        failed_at: from_micros(r.get(5)?),
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
        .await
    }

    async fn redrive(&self, job: JobId, now: Timestamp) -> Result<bool> {
        self.call(move |conn| {
            let n = conn.execute(
                "UPDATE jobs SET dead_at = NULL, attempts = 0, leased_until = NULL, available_at = ?2
                 WHERE id = ?1 AND dead_at IS NOT NULL",
                params![job.to_string(), to_micros(now)],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn release_leases(&self) -> Result<u64> {
        self.call(|conn| {
            Ok(conn.execute(
                "UPDATE jobs SET leased_until = NULL WHERE leased_until IS NOT NULL",
                [],
            )? as u64)
        })
        .await
    }
}
