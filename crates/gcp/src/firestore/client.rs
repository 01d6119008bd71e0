//! The REST client: documents, queries, transactions and commits, one request each.

use imagelake_core::events::Event;
use imagelake_metadata::Result;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{
    BATCH, FirestoreConfig, FirestoreStore, Refused, backend,
    values::{need, string, ts},
};

pub(super) fn equal(field: &str, value: Value) -> Value {
    json!({"fieldFilter": {"field": {"fieldPath": field}, "op": "EQUAL", "value": value}})
}

pub(super) fn compare(field: &str, op: &str, value: Value) -> Value {
    json!({"fieldFilter": {"field": {"fieldPath": field}, "op": op, "value": value}})
}

pub(super) fn all_of(filters: Vec<Value>) -> Value {
    if filters.len() == 1 {
        return filters.into_iter().next().unwrap_or(Value::Null);
    }
    json!({"compositeFilter": {"op": "AND", "filters": filters}})
}

pub(super) fn order(field: &str, direction: &str) -> Value {
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

    pub(super) fn name(&self, collection: &str, id: &str) -> String {
        format!("{}/{collection}/{id}", self.root)
    }

    pub(super) async fn call(
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

    pub(super) fn url(&self, tail: &str) -> String {
        format!("{}/v1/{}{tail}", self.endpoint, self.root)
    }

    pub(super) async fn get(&self, collection: &str, id: &str) -> Result<Option<Value>> {
        let url = format!("{}/v1/{}", self.endpoint, self.name(collection, id));
        match self.call(Method::GET, url, None).await? {
            (StatusCode::NOT_FOUND, _) => Ok(None),
            (s, doc) if s.is_success() => Ok(Some(doc)),
            (s, body) => Err(backend(format!("get {collection}/{id}: {s} {body}"))),
        }
    }

    pub(super) async fn query(&self, structured: Value) -> Result<Vec<Value>> {
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

    pub(super) async fn begin(&self) -> Result<String> {
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

    pub(super) async fn rollback(&self, transaction: &str) {
        let _ = self
            .call(
                Method::POST,
                self.url(":rollback"),
                Some(json!({"transaction": transaction})),
            )
            .await;
    }

    pub(super) async fn commit(
        &self,
        writes: Vec<Value>,
        transaction: Option<&str>,
    ) -> Result<(), Refused> {
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
    pub(super) async fn commit_all(&self, writes: Vec<Value>) -> Result<()> {
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

    pub(super) fn upsert(&self, collection: &str, id: &str, fields: Value) -> Value {
        json!({"update": {"name": self.name(collection, id), "fields": fields}})
    }

    pub(super) fn delete_write(&self, name: &str) -> Value {
        json!({"delete": name})
    }

    /// The write that puts `event` into the outbox.
    pub(super) fn outbox_write(&self, event: &Event) -> Result<Value> {
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
    pub(super) async fn commit_groups(&self, groups: Vec<Vec<Value>>) -> Result<()> {
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

    pub(super) async fn names_where(&self, collection: &str, filter: Value) -> Result<Vec<String>> {
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

    /// Documents by name inside `transaction`; the missing ones are left out.
    pub(super) async fn batch_get(
        &self,
        names: &[String],
        transaction: &str,
    ) -> Result<Vec<Value>> {
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
}
