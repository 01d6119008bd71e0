//! Rows to records and back.

use imagelake_core::{
    clock::from_micros,
    records::{
        ApiKey, Customer, ErrorInfo, Image, ImageStatus, KeyRole, ProcessedFacts, ServiceKey,
        Source, WireSecrets,
    },
};
use rusqlite::Row;

use crate::IdempotencyRecord;

/// Image columns in the order [`image_from_row`] reads them.
pub(super) const IMAGE_COLUMNS: &str = "id, customer_id, status, bytes, sha256, content_type, filename, \
                             uploaded_at, expires_at, facts, error, processed_at, generation, source";

pub(super) fn parse_id<T: std::str::FromStr>(s: String) -> rusqlite::Result<T> {
    s.parse()
        .map_err(|_| rusqlite::Error::InvalidColumnType(0, s, rusqlite::types::Type::Text))
}

pub(super) fn json_column<T: serde::de::DeserializeOwned>(
    raw: Option<String>,
) -> rusqlite::Result<Option<T>> {
    raw.map(|s| serde_json::from_str(&s))
        .transpose()
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })
}

pub(super) fn image_from_row(row: &Row<'_>) -> rusqlite::Result<Image> {
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
        source: row
            .get::<_, Option<String>>(13)?
            .and_then(|s| Source::parse(&s)),
    })
}

pub(super) fn customer_from_row(row: &Row<'_>) -> rusqlite::Result<Customer> {
    Ok(Customer {
        id: parse_id(row.get(0)?)?,
        name: row.get(1)?,
        email: row.get(2)?,
        plan: row.get(3)?,
        created_at: from_micros(row.get(4)?),
        updated_at: from_micros(row.get(5)?),
    })
}

pub(super) const KEY_COLUMNS: &str =
    "id, customer_id, prefix, hash, created_at, revoked_at, wire_scram, wire_md5";

pub(super) fn key_from_row(row: &Row<'_>) -> rusqlite::Result<ApiKey> {
    Ok(ApiKey {
        id: parse_id(row.get(0)?)?,
        customer_id: parse_id(row.get(1)?)?,
        prefix: row.get(2)?,
        hash: row.get(3)?,
        created_at: from_micros(row.get(4)?),
        revoked_at: row.get::<_, Option<i64>>(5)?.map(from_micros),
        wire: wire_from(row, 6)?,
    })
}

/// The wire secrets in columns `at` and `at + 1`, when the key has them.
fn wire_from(row: &Row<'_>, at: usize) -> rusqlite::Result<Option<WireSecrets>> {
    let scram: Option<String> = row.get(at)?;
    let md5: Option<String> = row.get(at + 1)?;
    Ok(scram
        .zip(md5)
        .map(|(scram, md5)| WireSecrets { scram, md5 }))
}

pub(super) const SERVICE_KEY_COLUMNS: &str =
    "id, role, name, prefix, hash, created_at, revoked_at, wire_scram, wire_md5";

pub(super) fn service_key_from_row(row: &Row<'_>) -> rusqlite::Result<ServiceKey> {
    let role: String = row.get(1)?;
    Ok(ServiceKey {
        key_id: parse_id(row.get(0)?)?,
        role: KeyRole::parse(&role).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                1,
                rusqlite::types::Type::Text,
                format!("unknown key role {role:?}").into(),
            )
        })?,
        name: row.get(2)?,
        prefix: row.get(3)?,
        hash: row.get(4)?,
        created_at: from_micros(row.get(5)?),
        revoked_at: row.get::<_, Option<i64>>(6)?.map(from_micros),
        wire: wire_from(row, 7)?,
    })
}

pub(super) fn idempotency_from_row(row: &Row<'_>) -> rusqlite::Result<IdempotencyRecord> {
    Ok(IdempotencyRecord {
        key: row.get(0)?,
        request_hash: row.get(1)?,
        status: row.get(2)?,
        body: row.get(3)?,
        created_at: from_micros(row.get(4)?),
    })
}

pub(super) fn to_json<T: serde::Serialize>(value: &Option<T>) -> Option<String> {
    value.as_ref().and_then(|v| serde_json::to_string(v).ok())
}
