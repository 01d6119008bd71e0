//! [`RunStore`] on Firestore: `job_runs/{job}~{interval}~{attempt}` and `backfills/{id}`, each
//! holding its record as JSON (`body`) beside the fields it is queried by. The composite
//! indexes these queries need are in `deploy/firestore.indexes.json`.

use async_trait::async_trait;
use imagelake_core::{
    Timestamp,
    jobs::{Backfill, JobRun},
};
use imagelake_metadata::{Result, RunCursor, RunStore};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    FirestoreStore, backend,
    client::{all_of, compare, equal, order},
    values::{get_str, int, need, string, ts},
};

const RUNS: &str = "job_runs";
const BACKFILLS: &str = "backfills";

fn run_id(job: &str, interval: &str, attempt: u32) -> String {
    format!("{job}~{interval}~{attempt:06}")
}

/// The document's `body` field, the stored JSON of a `T`.
pub(super) fn body<T: DeserializeOwned>(doc: &Value) -> Result<T> {
    let text = need(get_str(doc, "body"), "body")?;
    serde_json::from_str(&text).map_err(backend)
}

pub(super) fn bodies<T: DeserializeOwned>(docs: &[Value]) -> Result<Vec<T>> {
    docs.iter().map(body).collect()
}

impl FirestoreStore {
    async fn runs_where(&self, filter: Value, orders: Vec<Value>) -> Result<Vec<JobRun>> {
        let query = json!({"from": [{"collectionId": RUNS}], "where": filter, "orderBy": orders});
        bodies(&self.query(query).await?)
    }

    pub(super) async fn delete_where(&self, collection: &str, filter: Value) -> Result<u64> {
        let names = self.names_where(collection, filter).await?;
        let count = names.len() as u64;
        self.commit_all(names.iter().map(|n| self.delete_write(n)).collect())
            .await?;
        Ok(count)
    }
}

fn by_interval(direction: &str) -> Vec<Value> {
    vec![order("interval", direction), order("attempt", direction)]
}

#[async_trait]
impl RunStore for FirestoreStore {
    async fn put_run(&self, run: &JobRun) -> Result<()> {
        let fields = json!({
            "job": string(&run.job),
            "interval": string(&run.interval),
            "attempt": int(i64::from(run.attempt)),
            "state": string(run.state.as_str()),
            "queued_at": ts(run.queued_at),
            "body": string(&serde_json::to_string(run).map_err(backend)?),
        });
        let id = run_id(&run.job, &run.interval, run.attempt);
        self.commit_all(vec![self.upsert(RUNS, &id, fields)]).await
    }

    async fn runs_between(&self, job: &str, from: &str, to: &str) -> Result<Vec<JobRun>> {
        let filter = all_of(vec![
            equal("job", string(job)),
            compare("interval", "GREATER_THAN_OR_EQUAL", string(from)),
            compare("interval", "LESS_THAN_OR_EQUAL", string(to)),
        ]);
        self.runs_where(filter, by_interval("ASCENDING")).await
    }

    async fn recent_runs(
        &self,
        job: &str,
        after: Option<&RunCursor>,
        limit: usize,
    ) -> Result<Vec<JobRun>> {
        let mut query = json!({
            "from": [{"collectionId": RUNS}],
            "where": equal("job", string(job)),
            "orderBy": by_interval("DESCENDING"),
            "limit": limit,
        });
        if let Some(cursor) = after {
            query["startAt"] = json!({
                "values": [string(&cursor.interval), int(i64::from(cursor.attempt))],
                "before": false,
            });
        }
        bodies(&self.query(query).await?)
    }

    async fn open_runs(&self, job: &str) -> Result<Vec<JobRun>> {
        let open = json!({"arrayValue": {"values": [string("queued"), string("running")]}});
        let filter = all_of(vec![
            equal("job", string(job)),
            compare("state", "IN", open),
        ]);
        self.runs_where(filter, by_interval("ASCENDING")).await
    }

    async fn runs_since(&self, since: Timestamp) -> Result<Vec<JobRun>> {
        let filter = compare("queued_at", "GREATER_THAN_OR_EQUAL", ts(since));
        let mut runs = self
            .runs_where(filter, vec![order("queued_at", "ASCENDING")])
            .await?;
        runs.sort_by(|a, b| {
            (&a.job, &a.interval, a.attempt).cmp(&(&b.job, &b.interval, b.attempt))
        });
        Ok(runs)
    }

    async fn put_backfill(&self, backfill: &Backfill) -> Result<()> {
        let fields = json!({
            "job": string(&backfill.job),
            "created_at": ts(backfill.created_at),
            "body": string(&serde_json::to_string(backfill).map_err(backend)?),
        });
        let write = self.upsert(BACKFILLS, &backfill.id.to_string(), fields);
        self.commit_all(vec![write]).await
    }

    async fn get_backfill(&self, id: Uuid) -> Result<Option<Backfill>> {
        self.get(BACKFILLS, &id.to_string())
            .await?
            .as_ref()
            .map(body)
            .transpose()
    }

    async fn backfills(&self, job: &str) -> Result<Vec<Backfill>> {
        let query = json!({
            "from": [{"collectionId": BACKFILLS}],
            "where": equal("job", string(job)),
            "orderBy": [order("created_at", "DESCENDING"), order("__name__", "DESCENDING")],
        });
        bodies(&self.query(query).await?)
    }

    async fn purge_runs(&self, before: Timestamp) -> Result<u64> {
        let runs = self
            .delete_where(RUNS, compare("queued_at", "LESS_THAN", ts(before)))
            .await?;
        let backfills = self
            .delete_where(BACKFILLS, compare("created_at", "LESS_THAN", ts(before)))
            .await?;
        Ok(runs + backfills)
    }
}
