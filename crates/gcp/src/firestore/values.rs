//! Records to Firestore documents and back: typed values (`stringValue`, `timestampValue`, ...)
//! and the ids of documents derived from other keys.

use chrono::{DateTime, Utc};
use imagelake_core::{
    CustomerId, Timestamp,
    records::{
        ApiKey, Customer, ErrorInfo, Image, ImageStatus, KeyRole, ProcessedFacts, ServiceKey,
        Source, WireSecrets,
    },
};
use imagelake_metadata::{IdempotencyRecord, Result, StoreError};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::backend;

pub(super) fn ts(t: Timestamp) -> Value {
    json!({"timestampValue": t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)})
}

pub(super) fn string(s: &str) -> Value {
    json!({"stringValue": s})
}

pub(super) fn int(n: i64) -> Value {
    json!({"integerValue": n.to_string()})
}

pub(super) fn null() -> Value {
    json!({"nullValue": null})
}

pub(super) fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> Value) -> Value {
    v.map_or_else(null, f)
}

pub(super) fn field<'a>(doc: &'a Value, name: &str) -> Option<&'a Value> {
    doc.get("fields")?.get(name)
}

pub(super) fn get_str(doc: &Value, name: &str) -> Option<String> {
    field(doc, name)?
        .get("stringValue")?
        .as_str()
        .map(str::to_owned)
}

pub(super) fn get_i64(doc: &Value, name: &str) -> Option<i64> {
    field(doc, name)?
        .get("integerValue")?
        .as_str()?
        .parse()
        .ok()
}

pub(super) fn get_ts(doc: &Value, name: &str) -> Option<Timestamp> {
    let raw = field(doc, name)?.get("timestampValue")?.as_str()?;
    DateTime::parse_from_rfc3339(raw)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

pub(super) fn need<T>(v: Option<T>, what: &str) -> Result<T> {
    v.ok_or_else(|| backend(format!("document without {what}")))
}

pub(super) fn parse<T: std::str::FromStr>(s: String) -> Result<T> {
    s.parse()
        .map_err(|_| backend(format!("malformed id {s:?}")))
}

pub(super) fn json_field<T: serde::de::DeserializeOwned>(
    doc: &Value,
    name: &str,
) -> Result<Option<T>> {
    get_str(doc, name)
        .map(|s| serde_json::from_str(&s))
        .transpose()
        .map_err(backend)
}

pub(super) fn to_json_string<T: serde::Serialize>(v: &Option<T>) -> Value {
    v.as_ref()
        .and_then(|v| serde_json::to_string(v).ok())
        .map_or_else(null, |s| string(&s))
}

pub(super) fn customer_fields(c: &Customer) -> Value {
    json!({
        "name": string(&c.name), "email": string(&c.email), "plan": string(&c.plan),
        "created_at": ts(c.created_at), "updated_at": ts(c.updated_at),
    })
}

pub(super) fn customer_from(doc: &Value) -> Result<Customer> {
    Ok(Customer {
        id: parse(doc_id(doc)?)?,
        name: need(get_str(doc, "name"), "name")?,
        email: need(get_str(doc, "email"), "email")?,
        plan: need(get_str(doc, "plan"), "plan")?,
        created_at: need(get_ts(doc, "created_at"), "created_at")?,
        updated_at: need(get_ts(doc, "updated_at"), "updated_at")?,
    })
}

pub(super) fn key_fields(k: &ApiKey) -> Value {
    json!({
        "id": string(&k.id.to_string()), "customer_id": string(&k.customer_id.to_string()),
        "prefix": string(&k.prefix), "created_at": ts(k.created_at), "revoked_at": opt(k.revoked_at, ts),
        "wire_scram": opt(k.wire.as_ref(), |w| string(&w.scram)),
        "wire_md5": opt(k.wire.as_ref(), |w| string(&w.md5)),
    })
}

/// The key's wire secrets, when it has them.
fn wire_from(doc: &Value) -> Option<WireSecrets> {
    Some(WireSecrets {
        scram: get_str(doc, "wire_scram")?,
        md5: get_str(doc, "wire_md5")?,
    })
}

pub(super) fn key_from(doc: &Value) -> Result<ApiKey> {
    Ok(ApiKey {
        id: parse(need(get_str(doc, "id"), "id")?)?,
        customer_id: parse(need(get_str(doc, "customer_id"), "customer_id")?)?,
        prefix: need(get_str(doc, "prefix"), "prefix")?,
        hash: doc_id(doc)?,
        wire: wire_from(doc),
        created_at: need(get_ts(doc, "created_at"), "created_at")?,
        revoked_at: get_ts(doc, "revoked_at"),
    })
}

pub(super) fn service_key_fields(k: &ServiceKey) -> Value {
    json!({
        "id": string(&k.key_id.to_string()), "role": string(k.role.as_str()),
        "name": string(&k.name), "prefix": string(&k.prefix),
        "created_at": ts(k.created_at), "revoked_at": opt(k.revoked_at, ts),
        "wire_scram": opt(k.wire.as_ref(), |w| string(&w.scram)),
        "wire_md5": opt(k.wire.as_ref(), |w| string(&w.md5)),
    })
}

pub(super) fn service_key_from(doc: &Value) -> Result<ServiceKey> {
    let role = need(get_str(doc, "role"), "role")?;
    Ok(ServiceKey {
        key_id: parse(need(get_str(doc, "id"), "id")?)?,
        role: KeyRole::parse(&role)
            .ok_or_else(|| StoreError::Backend(format!("unknown key role {role:?}")))?,
        name: need(get_str(doc, "name"), "name")?,
        prefix: need(get_str(doc, "prefix"), "prefix")?,
        hash: doc_id(doc)?,
        wire: wire_from(doc),
        created_at: need(get_ts(doc, "created_at"), "created_at")?,
        revoked_at: get_ts(doc, "revoked_at"),
    })
}

pub(super) fn image_fields(i: &Image) -> Value {
    json!({
        "customer_id": string(&i.customer_id.to_string()),
        "status": string(i.status.as_str()),
        "bytes": int(i.bytes as i64),
        "sha256": string(&i.sha256),
        "content_type": string(&i.content_type),
        "filename": opt(i.filename.as_deref(), string),
        "uploaded_at": ts(i.uploaded_at),
        "expires_at": ts(i.expires_at),
        "facts": to_json_string(&i.facts),
        "error": to_json_string(&i.error),
        "processed_at": opt(i.processed_at, ts),
        "generation": opt(i.generation, int),
        "source": opt(i.source.map(|s| s.as_str()), string),
    })
}

pub(super) fn image_from(doc: &Value) -> Result<Image> {
    Ok(Image {
        id: parse(doc_id(doc)?)?,
        customer_id: parse(need(get_str(doc, "customer_id"), "customer_id")?)?,
        status: ImageStatus::parse(&need(get_str(doc, "status"), "status")?)
            .unwrap_or(ImageStatus::Received),
        bytes: need(get_i64(doc, "bytes"), "bytes")? as u64,
        sha256: need(get_str(doc, "sha256"), "sha256")?,
        content_type: need(get_str(doc, "content_type"), "content_type")?,
        filename: get_str(doc, "filename"),
        uploaded_at: need(get_ts(doc, "uploaded_at"), "uploaded_at")?,
        expires_at: need(get_ts(doc, "expires_at"), "expires_at")?,
        facts: json_field::<ProcessedFacts>(doc, "facts")?,
        error: json_field::<ErrorInfo>(doc, "error")?,
        processed_at: get_ts(doc, "processed_at"),
        generation: get_i64(doc, "generation"),
        source: get_str(doc, "source").and_then(|s| Source::parse(&s)),
    })
}

pub(super) fn idempotency_fields(customer: CustomerId, r: &IdempotencyRecord) -> Value {
    json!({
        "customer_id": string(&customer.to_string()), "key": string(&r.key),
        "request_hash": string(&r.request_hash), "status": int(i64::from(r.status)),
        "body": string(&r.body), "created_at": ts(r.created_at),
    })
}

pub(super) fn idempotency_from(doc: &Value) -> Result<IdempotencyRecord> {
    Ok(IdempotencyRecord {
        key: need(get_str(doc, "key"), "key")?,
        request_hash: need(get_str(doc, "request_hash"), "request_hash")?,
        status: u16::try_from(need(get_i64(doc, "status"), "status")?).map_err(backend)?,
        body: need(get_str(doc, "body"), "body")?,
        created_at: need(get_ts(doc, "created_at"), "created_at")?,
    })
}

/// The last segment of a document's name.
pub(super) fn doc_id(doc: &Value) -> Result<String> {
    let name = need(doc.get("name").and_then(Value::as_str), "name")?;
    Ok(name.rsplit('/').next().unwrap_or_default().to_owned())
}

pub(super) fn idempotency_id(customer: CustomerId, key: &str) -> String {
    format!("{customer}~{}", hex::encode(Sha256::digest(key.as_bytes())))
}

pub(super) fn dedup_id(customer: CustomerId, sha256: &str) -> String {
    format!("{customer}~{sha256}")
}

pub(super) fn email_id(customer: &Customer) -> String {
    hex::encode(Sha256::digest(customer.email_key().as_bytes()))
}
