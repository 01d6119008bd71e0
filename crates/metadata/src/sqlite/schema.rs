//! The tables, and bringing a database made by an earlier version up to date.

use imagelake_core::records::Customer;
use rusqlite::{Connection, params};

use super::rows::customer_from_row;

pub(super) const SCHEMA: &str = r#"
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
    revoked_at INTEGER,
    wire_scram TEXT,
    wire_md5 TEXT
);
CREATE INDEX IF NOT EXISTS api_keys_by_customer ON api_keys(customer_id);
CREATE TABLE IF NOT EXISTS service_keys (
    id TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER,
    wire_scram TEXT,
    wire_md5 TEXT
);
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
    generation INTEGER,
    source TEXT
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
CREATE TABLE IF NOT EXISTS job_runs (
    job TEXT NOT NULL,
    interval TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    state TEXT NOT NULL,
    queued_at INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (job, interval, attempt)
);
CREATE INDEX IF NOT EXISTS job_runs_open ON job_runs(job, state);
CREATE INDEX IF NOT EXISTS job_runs_by_age ON job_runs(queued_at);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_by_key ON sessions(key_id, id);
CREATE INDEX IF NOT EXISTS sessions_by_expiry ON sessions(expires_at);
CREATE TABLE IF NOT EXISTS heartbeats (
    process TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    beat_at INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS backfills (
    id TEXT PRIMARY KEY,
    job TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    body TEXT NOT NULL
);
"#;

/// Brings a database made by an earlier version up to [`SCHEMA`].
pub(super) fn add_missing_columns(conn: &Connection) -> rusqlite::Result<()> {
    let has_column = |table: &str, column: &str| {
        conn.prepare(&format!(
            "SELECT 1 FROM pragma_table_info('{table}') WHERE name = '{column}'"
        ))?
        .exists([])
    };
    if !has_column("images", "generation")? {
        conn.execute("ALTER TABLE images ADD COLUMN generation INTEGER", [])?;
    }
    if !has_column("images", "source")? {
        conn.execute("ALTER TABLE images ADD COLUMN source TEXT", [])?;
    }
    for table in ["api_keys", "service_keys"] {
        if !has_column(table, "wire_scram")? {
            conn.execute(
                &format!("ALTER TABLE {table} ADD COLUMN wire_scram TEXT"),
                [],
            )?;
            conn.execute(&format!("ALTER TABLE {table} ADD COLUMN wire_md5 TEXT"), [])?;
        }
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
