//! [`MetadataStore`] on Cloud Firestore, through its REST API.
//!
//! REST rather than gRPC: the same HTTP client as the GCS store, no protobuf toolchain in the
//! build, and every call is one request the emulator and production answer alike.
//!
//! Collections: `customers/{id}`, `api_keys/{sha256 of the key}` (a key lookup is one document
//! read), `images/{id}`, `idempotency/{customer}~{sha256 of the key}`, and
//! `dedup/{customer}~{sha256 of the bytes}` naming the image that holds those bytes, and
//! `customer_emails/{sha256 of the folded email}` naming the customer with that email, which
//! makes emails unique whatever their case. Timestamps are Firestore timestamps, which keep
//! microseconds, as every backend does.
//!
//! The checks that must not race (a live duplicate, a used idempotency key) are preconditions
//! on one commit, not reads in a transaction: the record, the `dedup` marker and the
//! idempotency key are created only if absent, so of concurrent uploads of the same bytes
//! exactly one commit succeeds and the others are refused at once; a loser then reads what won.
//! Reads inside a transaction take locks, and concurrent uploads of one image kept aborting each
//! other's transactions until they gave up. A `dedup` marker whose image is gone or expired is
//! stale: it is replaced at the `update_time` it was read with (so two replacements cannot both
//! win), and the TTL policy on its `expires_at` removes it. A customer's change, which must read
//! its old email to move its marker, is a transaction, tried again after a random wait when it
//! loses a race.
//!
//! Events go into `outbox/{event_id}` in the same commit as their change (the customer or image
//! write, or the insert transaction), and are deleted once the publisher has them on the events
//! topic: Kafka, not Firestore, is the event log of this deployment. An event written again by a
//! retried change is the same document, so the outbox never holds a change twice.
//!
//! Listing asks Firestore for `customer_id == X` ordered by `uploaded_at` then document id, both
//! descending, and leaves out expired records as it reads. The composite index this needs is
//! `deploy/firestore.indexes.json`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use imagelake_core::{
    CustomerId, ImageId, KeyId, Timestamp,
    events::{Event, EventType},
    records::{ApiKey, Customer, ErrorInfo, Image, ImageStatus, ProcessedFacts},
};
use imagelake_metadata::{
    IdempotencyRecord, ImageQuery, InsertOutcome, MetadataStore, NewImage, Removal, Result,
    StoreError,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::auth::{TokenSource, endpoint_from_env};

/// How often a transaction that lost a race is tried; the waits between tries grow from
/// [`RETRY_FIRST`] to [`RETRY_MAX`], each a random part of that (full jitter).
const TRANSACTION_ATTEMPTS: u32 = 10;
const RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(25);
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(1);

/// Waits before try `attempt` (from 1) of a transaction that lost a race.
async fn backoff(attempt: u32) {
    use rand::Rng;
    let cap = RETRY_FIRST
        .saturating_mul(1 << attempt.min(10))
        .min(RETRY_MAX);
    let wait = rand::rng().random_range(std::time::Duration::ZERO..=cap);
    tokio::time::sleep(wait).await;
}
/// Documents written per commit (Firestore allows 500).
const BATCH: usize = 400;

/// Which Firestore database and how to reach it.
#[derive(Debug)]
pub struct FirestoreConfig {
    pub project: String,
    pub database: String,
    /// `https://firestore.googleapis.com`, or the emulator's address.
    pub endpoint: String,
    pub tokens: TokenSource,
}

impl FirestoreConfig {
    /// Production Firestore with application default credentials, or the emulator named by
    /// `FIRESTORE_EMULATOR_HOST` without credentials.
    pub fn from_env(project: impl Into<String>) -> crate::Result<Self> {
        let (endpoint, tokens) = endpoint_from_env(
            "FIRESTORE_EMULATOR_HOST",
            "https://firestore.googleapis.com",
        )?;
        Ok(Self {
            project: project.into(),
            database: "(default)".to_owned(),
            endpoint,
            tokens,
        })
    }
}

#[derive(Debug)]
pub struct FirestoreStore {
    client: reqwest::Client,
    /// `projects/P/databases/D/documents`
    root: String,
    endpoint: String,
    tokens: TokenSource,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Outcome of a commit that Firestore refused.
enum Refused {
    /// The transaction lost a race; run it again.
    Aborted,
    /// A precondition failed (document exists / does not exist).
    Precondition,
    Other(StoreError),
}

// ---- values -----------------------------------------------------------------------------

fn ts(t: Timestamp) -> Value {
    json!({"timestampValue": t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)})
}

fn string(s: &str) -> Value {
    json!({"stringValue": s})
}

fn int(n: i64) -> Value {
    json!({"integerValue": n.to_string()})
}

fn null() -> Value {
    json!({"nullValue": null})
}

fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> Value) -> Value {
    v.map_or_else(null, f)
}

fn field<'a>(doc: &'a Value, name: &str) -> Option<&'a Value> {
    doc.get("fields")?.get(name)
}

fn get_str(doc: &Value, name: &str) -> Option<String> {
    field(doc, name)?
        .get("stringValue")?
        .as_str()
        .map(str::to_owned)
}

fn get_i64(doc: &Value, name: &str) -> Option<i64> {
    field(doc, name)?
        .get("integerValue")?
        .as_str()?
        .parse()
        .ok()
}

fn get_ts(doc: &Value, name: &str) -> Option<Timestamp> {
    let raw = field(doc, name)?.get("timestampValue")?.as_str()?;
    DateTime::parse_from_rfc3339(raw)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn need<T>(v: Option<T>, what: &str) -> Result<T> {
    v.ok_or_else(|| backend(format!("document without {what}")))
}

fn parse<T: std::str::FromStr>(s: String) -> Result<T> {
    s.parse()
        .map_err(|_| backend(format!("malformed id {s:?}")))
}

fn json_field<T: serde::de::DeserializeOwned>(doc: &Value, name: &str) -> Result<Option<T>> {
    get_str(doc, name)
        .map(|s| serde_json::from_str(&s))
        .transpose()
        .map_err(backend)
}

fn to_json_string<T: serde::Serialize>(v: &Option<T>) -> Value {
    v.as_ref()
        .and_then(|v| serde_json::to_string(v).ok())
        .map_or_else(null, |s| string(&s))
}

fn customer_fields(c: &Customer) -> Value {
    json!({
        "name": string(&c.name), "email": string(&c.email), "plan": string(&c.plan),
        "created_at": ts(c.created_at), "updated_at": ts(c.updated_at),
    })
}

fn customer_from(doc: &Value) -> Result<Customer> {
    Ok(Customer {
        id: parse(doc_id(doc)?)?,
        name: need(get_str(doc, "name"), "name")?,
        email: need(get_str(doc, "email"), "email")?,
        plan: need(get_str(doc, "plan"), "plan")?,
        created_at: need(get_ts(doc, "created_at"), "created_at")?,
        updated_at: need(get_ts(doc, "updated_at"), "updated_at")?,
    })
}

fn key_fields(k: &ApiKey) -> Value {
    json!({
        "id": string(&k.id.to_string()), "customer_id": string(&k.customer_id.to_string()),
        "prefix": string(&k.prefix), "created_at": ts(k.created_at), "revoked_at": opt(k.revoked_at, ts),
    })
}

fn key_from(doc: &Value) -> Result<ApiKey> {
    Ok(ApiKey {
        id: parse(need(get_str(doc, "id"), "id")?)?,
        customer_id: parse(need(get_str(doc, "customer_id"), "customer_id")?)?,
        prefix: need(get_str(doc, "prefix"), "prefix")?,
        hash: doc_id(doc)?,
        created_at: need(get_ts(doc, "created_at"), "created_at")?,
        revoked_at: get_ts(doc, "revoked_at"),
    })
}

fn image_fields(i: &Image) -> Value {
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
    })
}

fn image_from(doc: &Value) -> Result<Image> {
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
    })
}

fn idempotency_fields(customer: CustomerId, r: &IdempotencyRecord) -> Value {
    json!({
        "customer_id": string(&customer.to_string()), "key": string(&r.key),
        "request_hash": string(&r.request_hash), "status": int(i64::from(r.status)),
        "body": string(&r.body), "created_at": ts(r.created_at),
    })
}

fn idempotency_from(doc: &Value) -> Result<IdempotencyRecord> {
    Ok(IdempotencyRecord {
        key: need(get_str(doc, "key"), "key")?,
        request_hash: need(get_str(doc, "request_hash"), "request_hash")?,
        status: u16::try_from(need(get_i64(doc, "status"), "status")?).map_err(backend)?,
        body: need(get_str(doc, "body"), "body")?,
        created_at: need(get_ts(doc, "created_at"), "created_at")?,
    })
}

/// The last segment of a document's name.
fn doc_id(doc: &Value) -> Result<String> {
    let name = need(doc.get("name").and_then(Value::as_str), "name")?;
    Ok(name.rsplit('/').next().unwrap_or_default().to_owned())
}

fn idempotency_id(customer: CustomerId, key: &str) -> String {
    format!("{customer}~{}", hex::encode(Sha256::digest(key.as_bytes())))
}

fn dedup_id(customer: CustomerId, sha256: &str) -> String {
    format!("{customer}~{sha256}")
}

fn email_id(customer: &Customer) -> String {
    hex::encode(Sha256::digest(customer.email_key().as_bytes()))
}

// ---- queries ----------------------------------------------------------------------------

fn equal(field: &str, value: Value) -> Value {
    json!({"fieldFilter": {"field": {"fieldPath": field}, "op": "EQUAL", "value": value}})
}

fn compare(field: &str, op: &str, value: Value) -> Value {
    json!({"fieldFilter": {"field": {"fieldPath": field}, "op": op, "value": value}})
}

fn all_of(filters: Vec<Value>) -> Value {
    if filters.len() == 1 {
        return filters.into_iter().next().unwrap_or(Value::Null);
    }
    json!({"compositeFilter": {"op": "AND", "filters": filters}})
}

fn order(field: &str, direction: &str) -> Value {
    json!({"field": {"fieldPath": field}, "direction": direction})
}

impl FirestoreStore {
    pub fn new(config: FirestoreConfig) -> Result<Self> {
        let client = reqwest::Client::builder().build().map_err(backend)?;
        Ok(Self {
            client,
            root: format!(
                "projects/{}/databases/{}/documents",
                config.project, config.database
            ),
            endpoint: config.endpoint.trim_end_matches('/').to_owned(),
            tokens: config.tokens,
        })
    }

    fn name(&self, collection: &str, id: &str) -> String {
        format!("{}/{collection}/{id}", self.root)
    }

    async fn call(
        &self,
        method: Method,
        url: String,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value)> {
        let mut request = self.client.request(method, url);
        if let Some(token) = self.tokens.token(&self.client).await.map_err(backend)? {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| backend(format!("Firestore unreachable: {e}")))?;
        let status = response.status();
        let text = response.text().await.map_err(backend)?;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, value))
    }

    fn url(&self, tail: &str) -> String {
        format!("{}/v1/{}{tail}", self.endpoint, self.root)
    }

    async fn get(&self, collection: &str, id: &str) -> Result<Option<Value>> {
        let url = format!("{}/v1/{}", self.endpoint, self.name(collection, id));
        match self.call(Method::GET, url, None).await? {
            (StatusCode::NOT_FOUND, _) => Ok(None),
            (s, doc) if s.is_success() => Ok(Some(doc)),
            (s, body) => Err(backend(format!("get {collection}/{id}: {s} {body}"))),
        }
    }

    async fn query(&self, structured: Value) -> Result<Vec<Value>> {
        let body = json!({"structuredQuery": structured});
        let (status, answer) = self
            .call(Method::POST, self.url(":runQuery"), Some(body))
            .await?;
        if !status.is_success() {
            return Err(backend(format!("query: {status} {answer}")));
        }
        Ok(answer
            .as_array()
            .map(|rows| {
                rows.iter()
                    .filter_map(|r| r.get("document").cloned())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn begin(&self) -> Result<String> {
        let (status, answer) = self
            .call(Method::POST, self.url(":beginTransaction"), Some(json!({})))
            .await?;
        if !status.is_success() {
            return Err(backend(format!("begin transaction: {status} {answer}")));
        }
        Ok(need(
            answer.get("transaction").and_then(Value::as_str),
            "transaction",
        )?
        .to_owned())
    }

    async fn rollback(&self, transaction: &str) {
        let _ = self
            .call(
                Method::POST,
                self.url(":rollback"),
                Some(json!({"transaction": transaction})),
            )
            .await;
    }

    async fn commit(&self, writes: Vec<Value>, transaction: Option<&str>) -> Result<(), Refused> {
        let mut body = json!({"writes": writes});
        if let Some(t) = transaction {
            body["transaction"] = t.into();
        }
        let (status, answer) = self
            .call(Method::POST, self.url(":commit"), Some(body))
            .await
            .map_err(Refused::Other)?;
        let grpc = answer
            .pointer("/error/status")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match status {
            s if s.is_success() => Ok(()),
            _ if grpc == "ABORTED" => Err(Refused::Aborted),
            _ if matches!(grpc, "FAILED_PRECONDITION" | "NOT_FOUND" | "ALREADY_EXISTS") => {
                Err(Refused::Precondition)
            }
            s => Err(Refused::Other(backend(format!("commit: {s} {answer}")))),
        }
    }

    /// Commits writes in batches; for deletions and other writes that need no atomicity.
    async fn commit_all(&self, writes: Vec<Value>) -> Result<()> {
        for batch in writes.chunks(BATCH) {
            self.commit(batch.to_vec(), None)
                .await
                .map_err(|r| match r {
                    Refused::Other(e) => e,
                    _ => backend("batch commit refused"),
                })?;
        }
        Ok(())
    }

    fn upsert(&self, collection: &str, id: &str, fields: Value) -> Value {
        json!({"update": {"name": self.name(collection, id), "fields": fields}})
    }

    fn delete_write(&self, name: &str) -> Value {
        json!({"delete": name})
    }

    /// The write that puts `event` into the outbox.
    fn outbox_write(&self, event: &Event) -> Result<Value> {
        let payload = serde_json::to_string(event).map_err(backend)?;
        Ok(self.upsert(
            "outbox",
            &event.event_id.to_string(),
            json!({
                "customer_id": string(&event.customer_id.to_string()),
                "occurred_at": ts(event.occurred_at),
                "payload": string(&payload),
            }),
        ))
    }

    /// Commits groups of writes that must land together (a deletion and its event), as few
    /// commits as the batch limit allows, never splitting a group.
    async fn commit_groups(&self, groups: Vec<Vec<Value>>) -> Result<()> {
        let mut batch: Vec<Value> = Vec::new();
        for group in groups {
            if !batch.is_empty() && batch.len() + group.len() > BATCH {
                self.commit_all(std::mem::take(&mut batch)).await?;
            }
            batch.extend(group);
        }
        if !batch.is_empty() {
            self.commit_all(batch).await?;
        }
        Ok(())
    }

    async fn names_where(&self, collection: &str, filter: Value) -> Result<Vec<String>> {
        let query = json!({
            "from": [{"collectionId": collection}],
            "where": filter,
            "select": {"fields": [{"fieldPath": "__name__"}]},
        });
        let docs = self.query(query).await?;
        Ok(docs
            .iter()
            .filter_map(|d| d.get("name").and_then(Value::as_str).map(str::to_owned))
            .collect())
    }

    /// The oldest live image of `customer` with these bytes, by query (outside transactions).
    async fn live_duplicate(
        &self,
        customer: CustomerId,
        sha256: &str,
        now: Timestamp,
    ) -> Result<Option<Image>> {
        let query = json!({
            "from": [{"collectionId": "images"}],
            "where": all_of(vec![equal("customer_id", string(&customer.to_string())), equal("sha256", string(sha256))]),
        });
        let mut live: Vec<Image> = self
            .query(query)
            .await?
            .iter()
            .map(image_from)
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .filter(|i| i.expires_at > now)
            .collect();
        live.sort_by_key(|i| (i.uploaded_at, i.id));
        Ok(live.into_iter().next())
    }

    /// Documents by name inside `transaction`; the missing ones are left out.
    async fn batch_get(&self, names: &[String], transaction: &str) -> Result<Vec<Value>> {
        let body = json!({"documents": names, "transaction": transaction});
        let (status, answer) = self
            .call(Method::POST, self.url(":batchGet"), Some(body))
            .await?;
        if !status.is_success() {
            return Err(backend(format!("batchGet: {status} {answer}")));
        }
        Ok(answer
            .as_array()
            .map(|rows| {
                rows.iter()
                    .filter_map(|r| r.get("found").cloned())
                    .collect()
            })
            .unwrap_or_default())
    }

    /// One attempt at the insert: a single commit of the record, its `dedup` marker, its
    /// idempotency key and its event, made atomic and race-free by preconditions rather than a
    /// transaction. The marker and the key are created only if absent (or the marker replaced
    /// only at the `update_time` it was read with, when it is stale), so of concurrent uploads
    /// of the same bytes exactly one commits and the others fail at once, without holding or
    /// waiting for locks; each then reads what won, outside any transaction.
    async fn try_insert_image(&self, new: &NewImage, stale: Option<&str>) -> Result<Attempt> {
        let image = &new.image;
        let customer = image.customer_id;
        let mut writes = vec![json!({
            "update": {"name": self.name("images", &image.id.to_string()), "fields": image_fields(image)},
            "currentDocument": {"exists": false},
        })];
        // A record made before its bytes arrive (a signed-URL upload) has no hash to compare yet.
        let has_bytes = !image.sha256.is_empty();
        if has_bytes {
            let mut marker = self.upsert(
                "dedup",
                &dedup_id(customer, &image.sha256),
                json!({
                    "customer_id": string(&customer.to_string()),
                    "image_id": string(&image.id.to_string()),
                    "expires_at": ts(image.expires_at),
                }),
            );
            marker["currentDocument"] = match stale {
                Some(update_time) => json!({"updateTime": update_time}),
                None => json!({"exists": false}),
            };
            writes.push(marker);
        }
        if let Some(idem) = &new.idempotency {
            let mut key = self.upsert(
                "idempotency",
                &idempotency_id(customer, &idem.key),
                idempotency_fields(customer, idem),
            );
            key["currentDocument"] = json!({"exists": false});
            writes.push(key);
        }
        let received = Event::image(EventType::ImageReceived, image, image.uploaded_at);
        writes.push(self.outbox_write(&received)?);
        match self.commit(writes, None).await {
            Ok(()) => Ok(Attempt::Done(InsertOutcome::Created)),
            Err(Refused::Precondition) => self.what_won(new).await,
            Err(Refused::Aborted) => Ok(Attempt::Again(stale.map(str::to_owned))),
            Err(Refused::Other(e)) => Err(e),
        }
    }

    /// After a refused insert: the idempotency key's first answer, or the live image with these
    /// bytes, or what to replace on the next try.
    async fn what_won(&self, new: &NewImage) -> Result<Attempt> {
        let image = &new.image;
        if let Some(idem) = &new.idempotency
            && let Some(previous) = self
                .get("idempotency", &idempotency_id(image.customer_id, &idem.key))
                .await?
        {
            return Ok(Attempt::Done(InsertOutcome::Replay(idempotency_from(
                &previous,
            )?)));
        }
        if image.sha256.is_empty() {
            return Err(StoreError::AlreadyExists(format!("image {}", image.id)));
        }
        let Some(marker) = self
            .get("dedup", &dedup_id(image.customer_id, &image.sha256))
            .await?
        else {
            // Removed in between: try again as the first.
            return Ok(Attempt::Again(None));
        };
        let update_time = need(
            marker.get("updateTime").and_then(Value::as_str),
            "updateTime",
        )?;
        let live = match get_str(&marker, "image_id") {
            Some(existing) => self
                .get("images", &existing)
                .await?
                .as_ref()
                .map(image_from)
                .transpose()?
                .filter(|i| i.expires_at > image.uploaded_at),
            None => None,
        };
        Ok(match live {
            Some(existing) => Attempt::Done(InsertOutcome::Duplicate(Box::new(existing))),
            // Its image was deleted or has expired: the marker is stale, replace it.
            None => Attempt::Again(Some(update_time.to_owned())),
        })
    }

    /// One attempt at changing a customer: the customer and the email markers in one
    /// transaction, so two customers never end up with one email.
    async fn try_update_customer(&self, customer: &Customer) -> Result<Result<(), Refused>> {
        let transaction = self.begin().await?;
        let name = self.name("customers", &customer.id.to_string());
        let marker = self.name("customer_emails", &email_id(customer));
        let found = match self
            .batch_get(&[name.clone(), marker.clone()], &transaction)
            .await
        {
            Ok(found) => found,
            Err(e) => {
                self.rollback(&transaction).await;
                return Err(e);
            }
        };
        let doc = |n: &str| {
            found
                .iter()
                .find(|d| d.get("name").and_then(Value::as_str) == Some(n))
        };
        let Some(current) = doc(&name).map(customer_from).transpose()? else {
            self.rollback(&transaction).await;
            return Ok(Err(Refused::Precondition));
        };
        if doc(&marker)
            .and_then(|m| get_str(m, "customer_id"))
            .is_some_and(|owner| owner != customer.id.to_string())
        {
            self.rollback(&transaction).await;
            return Err(email_taken());
        }
        let mut writes = vec![json!({
            "update": {"name": name, "fields": customer_fields(customer)},
            "currentDocument": {"exists": true},
        })];
        if email_id(&current) != email_id(customer) {
            writes.push(self.delete_write(&self.name("customer_emails", &email_id(&current))));
        }
        writes.push(self.email_marker(customer));
        let event = Event::customer(EventType::CustomerUpdated, customer, customer.updated_at);
        writes.push(self.outbox_write(&event)?);
        Ok(self.commit(writes, Some(&transaction)).await)
    }

    fn email_marker(&self, customer: &Customer) -> Value {
        self.upsert(
            "customer_emails",
            &email_id(customer),
            json!({"customer_id": string(&customer.id.to_string())}),
        )
    }
}

/// How one try of the insert ended.
enum Attempt {
    Done(InsertOutcome),
    /// Try again; replacing the stale `dedup` marker last updated at this time, if any.
    Again(Option<String>),
}

fn email_taken() -> StoreError {
    StoreError::AlreadyExists("a customer with this email".to_owned())
}

#[async_trait]
impl MetadataStore for FirestoreStore {
    async fn insert_customer(&self, customer: &Customer, key: &ApiKey) -> Result<()> {
        let mut marker = self.email_marker(customer);
        marker["currentDocument"] = json!({"exists": false});
        let writes = vec![
            json!({
                "update": {"name": self.name("customers", &customer.id.to_string()), "fields": customer_fields(customer)},
                "currentDocument": {"exists": false},
            }),
            marker,
            self.upsert("api_keys", &key.hash, key_fields(key)),
            self.outbox_write(&Event::customer(
                EventType::CustomerCreated,
                customer,
                customer.created_at,
            ))?,
        ];
        match self.commit(writes, None).await {
            Ok(()) => Ok(()),
            Err(Refused::Precondition) => {
                let exists = self.get("customers", &customer.id.to_string()).await?;
                Err(if exists.is_some() {
                    StoreError::AlreadyExists(format!("customer {}", customer.id))
                } else {
                    email_taken()
                })
            }
            Err(Refused::Aborted) => Err(backend("customer creation aborted")),
            Err(Refused::Other(e)) => Err(e),
        }
    }

    async fn get_customer(&self, id: CustomerId) -> Result<Option<Customer>> {
        self.get("customers", &id.to_string())
            .await?
            .as_ref()
            .map(customer_from)
            .transpose()
    }

    async fn update_customer(&self, customer: &Customer) -> Result<()> {
        for attempt in 1..=TRANSACTION_ATTEMPTS {
            match self.try_update_customer(customer).await? {
                Ok(()) => return Ok(()),
                Err(Refused::Aborted) => backoff(attempt).await,
                Err(Refused::Precondition) => return Err(StoreError::NotFound),
                Err(Refused::Other(e)) => return Err(e),
            }
        }
        Err(backend("customer update kept losing transaction races"))
    }

    async fn delete_customer(&self, id: CustomerId, at: Timestamp) -> Result<()> {
        let Some(doc) = self.get("customers", &id.to_string()).await? else {
            return Err(StoreError::NotFound);
        };
        let customer = customer_from(&doc)?;
        let owner = equal("customer_id", string(&id.to_string()));
        let images = json!({"from": [{"collectionId": "images"}], "where": owner.clone()});
        let mut groups = Vec::new();
        for doc in self.query(images).await? {
            let image = image_from(&doc)?;
            let event = Event::image(EventType::ImageDeleted, &image, at);
            let name = need(doc.get("name").and_then(Value::as_str), "name")?;
            groups.push(vec![self.delete_write(name), self.outbox_write(&event)?]);
        }
        for collection in ["idempotency", "dedup", "api_keys"] {
            for name in self.names_where(collection, owner.clone()).await? {
                groups.push(vec![self.delete_write(&name)]);
            }
        }
        let deleted = Event::customer(EventType::CustomerDeleted, &customer, at);
        let mut last = vec![
            self.delete_write(&self.name("customers", &id.to_string())),
            self.outbox_write(&deleted)?,
        ];
        // The email's marker goes with its customer, and only with its own customer.
        let marker = self.get("customer_emails", &email_id(&customer)).await?;
        if marker.and_then(|m| get_str(&m, "customer_id")) == Some(id.to_string()) {
            last.push(self.delete_write(&self.name("customer_emails", &email_id(&customer))));
        }
        groups.push(last);
        self.commit_groups(groups).await
    }

    async fn insert_key(&self, key: &ApiKey) -> Result<()> {
        if self
            .get("customers", &key.customer_id.to_string())
            .await?
            .is_none()
        {
            return Err(StoreError::NotFound);
        }
        self.commit_all(vec![self.upsert("api_keys", &key.hash, key_fields(key))])
            .await
    }

    async fn list_keys(&self, customer: CustomerId) -> Result<Vec<ApiKey>> {
        let query = json!({"from": [{"collectionId": "api_keys"}], "where": equal("customer_id", string(&customer.to_string()))});
        let mut keys = self
            .query(query)
            .await?
            .iter()
            .map(key_from)
            .collect::<Result<Vec<_>>>()?;
        keys.sort_by_key(|k| (k.created_at, k.id));
        Ok(keys)
    }

    async fn revoke_key(&self, customer: CustomerId, key: KeyId, at: Timestamp) -> Result<()> {
        let found = self
            .list_keys(customer)
            .await?
            .into_iter()
            .find(|k| k.id == key && k.revoked_at.is_none())
            .ok_or(StoreError::NotFound)?;
        let revoked = ApiKey {
            revoked_at: Some(at),
            ..found
        };
        self.commit_all(vec![self.upsert(
            "api_keys",
            &revoked.hash,
            key_fields(&revoked),
        )])
        .await
    }

    async fn find_key(&self, hash: &str) -> Result<Option<ApiKey>> {
        let key = self
            .get("api_keys", hash)
            .await?
            .as_ref()
            .map(key_from)
            .transpose()?;
        Ok(key.filter(|k| k.revoked_at.is_none()))
    }

    async fn live_key_hashes(&self, limit: usize) -> Result<Vec<String>> {
        let query = json!({
            "from": [{"collectionId": "api_keys"}],
            "select": {"fields": [{"fieldPath": "revoked_at"}]},
            "limit": limit,
        });
        self.query(query)
            .await?
            .iter()
            .filter(|doc| get_ts(doc, "revoked_at").is_none())
            .map(doc_id)
            .collect()
    }

    async fn insert_image(&self, new: &NewImage, enqueue: bool) -> Result<InsertOutcome> {
        if enqueue {
            return Err(backend(
                "Firestore keeps no work queue: on Google Cloud the bucket notification queues the work",
            ));
        }
        let mut stale: Option<String> = None;
        for attempt in 1..=TRANSACTION_ATTEMPTS {
            match self.try_insert_image(new, stale.as_deref()).await? {
                Attempt::Done(outcome) => return Ok(outcome),
                Attempt::Again(replace) => {
                    // Another upload changed the marker between the refusal and the read, or
                    // Firestore aborted the commit: wait a random while, so racing uploads do
                    // not collide again in step.
                    if replace == stale {
                        backoff(attempt).await;
                    }
                    stale = replace;
                }
            }
        }
        Err(backend("image insert kept losing races"))
    }

    async fn find_idempotent(
        &self,
        customer: CustomerId,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>> {
        self.get("idempotency", &idempotency_id(customer, key))
            .await?
            .as_ref()
            .map(idempotency_from)
            .transpose()
    }

    async fn remember_answer(
        &self,
        customer: CustomerId,
        record: &IdempotencyRecord,
    ) -> Result<Option<IdempotencyRecord>> {
        let id = idempotency_id(customer, &record.key);
        let mut write = self.upsert("idempotency", &id, idempotency_fields(customer, record));
        write["currentDocument"] = json!({"exists": false});
        for attempt in 1..=TRANSACTION_ATTEMPTS {
            match self.commit(vec![write.clone()], None).await {
                Ok(()) => return Ok(None),
                Err(Refused::Precondition) => {
                    if let Some(first) = self.get("idempotency", &id).await? {
                        return idempotency_from(&first).map(Some);
                    }
                    // Purged in between: record this one.
                }
                Err(Refused::Aborted) => backoff(attempt).await,
                Err(Refused::Other(e)) => return Err(e),
            }
        }
        Err(backend("recording an idempotent answer kept losing races"))
    }

    async fn find_live_duplicate(
        &self,
        customer: CustomerId,
        sha256: &str,
        now: Timestamp,
    ) -> Result<Option<Image>> {
        self.live_duplicate(customer, sha256, now).await
    }

    async fn get_image(&self, id: ImageId) -> Result<Option<Image>> {
        self.get("images", &id.to_string())
            .await?
            .as_ref()
            .map(image_from)
            .transpose()
    }

    async fn list_images(&self, customer: CustomerId, query: &ImageQuery) -> Result<Vec<Image>> {
        let mut filters = vec![equal("customer_id", string(&customer.to_string()))];
        if let Some(since) = query.since {
            filters.push(compare("uploaded_at", "GREATER_THAN_OR_EQUAL", ts(since)));
        }
        if let Some(until) = query.until {
            filters.push(compare("uploaded_at", "LESS_THAN", ts(until)));
        }
        let mut after = query.after.map(|c| (c.uploaded_at, c.id));
        let mut out = Vec::new();
        // Expired records are left out as they are read, so a page may need another round trip.
        while out.len() < query.limit {
            let mut structured = json!({
                "from": [{"collectionId": "images"}],
                "where": all_of(filters.clone()),
                "orderBy": [order("uploaded_at", "DESCENDING"), order("__name__", "DESCENDING")],
                "limit": query.limit,
            });
            if let Some((uploaded_at, id)) = after {
                structured["startAt"] = json!({
                    "values": [ts(uploaded_at), {"referenceValue": self.name("images", &id.to_string())}],
                    "before": false,
                });
            }
            let page = self
                .query(structured)
                .await?
                .iter()
                .map(image_from)
                .collect::<Result<Vec<_>>>()?;
            let full = page.len() == query.limit;
            after = page.last().map(|i| (i.uploaded_at, i.id));
            out.extend(page.into_iter().filter(|i| i.expires_at > query.now));
            if !full {
                break;
            }
        }
        out.truncate(query.limit);
        Ok(out)
    }

    async fn customer_image_ids(&self, customer: CustomerId) -> Result<Vec<ImageId>> {
        let names = self
            .names_where(
                "images",
                equal("customer_id", string(&customer.to_string())),
            )
            .await?;
        names
            .into_iter()
            .map(|n| parse(n.rsplit('/').next().unwrap_or_default().to_owned()))
            .collect()
    }

    async fn update_image(&self, image: &Image) -> Result<()> {
        let fields = image_fields(image);
        let mask = [
            "status",
            "facts",
            "error",
            "processed_at",
            "bytes",
            "sha256",
            "content_type",
            "generation",
        ];
        let mut writes = vec![json!({
            "update": {"name": self.name("images", &image.id.to_string()), "fields": fields},
            "updateMask": {"fieldPaths": mask},
            "currentDocument": {"exists": true},
        })];
        if let Some(settled) = EventType::settled_as(image.status) {
            let at = image.processed_at.unwrap_or(image.uploaded_at);
            writes.push(self.outbox_write(&Event::image(settled, image, at))?);
        }
        match self.commit(writes, None).await {
            Ok(()) => Ok(()),
            Err(Refused::Precondition) => Err(StoreError::NotFound),
            Err(Refused::Aborted) => Err(backend("image update aborted")),
            Err(Refused::Other(e)) => Err(e),
        }
    }

    async fn delete_image(&self, image: &Image, removal: Removal, at: Timestamp) -> Result<bool> {
        let write = json!({"delete": self.name("images", &image.id.to_string()), "currentDocument": {"exists": true}});
        let event = Event::image(removal.event_type(), image, at);
        match self
            .commit(vec![write, self.outbox_write(&event)?], None)
            .await
        {
            Ok(()) => Ok(true),
            Err(Refused::Precondition) => Ok(false),
            Err(Refused::Aborted) => Err(backend("image delete aborted")),
            Err(Refused::Other(e)) => Err(e),
        }
    }

    async fn expired_images(&self, now: Timestamp, limit: usize) -> Result<Vec<Image>> {
        let query = json!({
            "from": [{"collectionId": "images"}],
            "where": compare("expires_at", "LESS_THAN_OR_EQUAL", ts(now)),
            "orderBy": [order("expires_at", "ASCENDING")],
            "limit": limit,
        });
        self.query(query).await?.iter().map(image_from).collect()
    }

    async fn pending_uploads(&self, before: Timestamp, limit: usize) -> Result<Vec<Image>> {
        let query = json!({
            "from": [{"collectionId": "images"}],
            "where": all_of(vec![
                equal("status", string(ImageStatus::PendingUpload.as_str())),
                compare("uploaded_at", "LESS_THAN", ts(before)),
            ]),
            "orderBy": [order("uploaded_at", "ASCENDING")],
            "limit": limit,
        });
        self.query(query).await?.iter().map(image_from).collect()
    }

    async fn purge_idempotency(&self, before: Timestamp) -> Result<u64> {
        let names = self
            .names_where(
                "idempotency",
                compare("created_at", "LESS_THAN", ts(before)),
            )
            .await?;
        let count = names.len() as u64;
        self.commit_all(names.iter().map(|n| self.delete_write(n)).collect())
            .await?;
        Ok(count)
    }

    async fn unpublished_events(&self, limit: usize) -> Result<Vec<Event>> {
        let query = json!({
            "from": [{"collectionId": "outbox"}],
            "orderBy": [order("occurred_at", "ASCENDING"), order("__name__", "ASCENDING")],
            "limit": limit,
        });
        self.query(query)
            .await?
            .iter()
            .map(|doc| {
                let payload = need(get_str(doc, "payload"), "payload")?;
                serde_json::from_str(&payload).map_err(backend)
            })
            .collect()
    }

    async fn mark_published(&self, ids: &[Uuid], _at: Timestamp) -> Result<()> {
        let writes = ids
            .iter()
            .map(|id| self.delete_write(&self.name("outbox", &id.to_string())))
            .collect();
        self.commit_all(writes).await
    }

    async fn purge_events(&self, before: Timestamp) -> Result<u64> {
        let names = self
            .names_where("outbox", compare("occurred_at", "LESS_THAN", ts(before)))
            .await?;
        let count = names.len() as u64;
        self.commit_all(names.iter().map(|n| self.delete_write(n)).collect())
            .await?;
        Ok(count)
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool> {
        for _ in 0..TRANSACTION_ATTEMPTS {
            let transaction = self.begin().await?;
            let found = self
                .batch_get(&[self.name("leases", name)], &transaction)
                .await?;
            let taken = found.first().is_some_and(|doc| {
                get_str(doc, "holder").as_deref() != Some(holder)
                    && get_ts(doc, "until").is_some_and(|t| t > now)
            });
            if taken {
                self.rollback(&transaction).await;
                return Ok(false);
            }
            let fields = json!({"holder": string(holder), "until": ts(until)});
            match self
                .commit(
                    vec![self.upsert("leases", name, fields)],
                    Some(&transaction),
                )
                .await
            {
                Ok(()) => return Ok(true),
                Err(Refused::Aborted) => continue,
                Err(Refused::Precondition) => return Ok(false),
                Err(Refused::Other(e)) => return Err(e),
            }
        }
        Ok(false)
    }

    async fn ping(&self) -> Result<()> {
        self.get("customers", "readiness-probe").await.map(drop)
    }
}
