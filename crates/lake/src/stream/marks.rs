//! Hours marked complete with brokers: an hour of a table gets its `_SUCCESS` once every
//! partition of the table's topic has closed it, with the rows and files every partition's
//! manifest counts for it; `_marked.json` beside the manifests says how far the topic's
//! markers go. Any writer of the group may write them; they say the same whoever writes.

use std::collections::BTreeMap;

use anyhow::Context;
use imagelake_core::{lake as tables, paths};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use rdkafka::consumer::Consumer;
use serde_json::json;

use super::{BROKER_TIMEOUT, Key, StreamWriter};
use crate::{
    log::{Hour, hour_of, hour_start},
    manifest::{Count, Manifest},
};

/// Every partition's manifest of one topic, by partition.
type Manifests = Vec<(i32, Manifest)>;

impl StreamWriter {
    /// The manifests of every partition of `topic`, or `None` while one has none yet (a
    /// partition no writer has held: its hours cannot be called complete).
    pub(super) async fn manifests(&self, topic: &str) -> anyhow::Result<Option<Manifests>> {
        let consumer = self.consumer.clone();
        let name = topic.to_owned();
        let metadata = tokio::task::spawn_blocking(move || {
            consumer.fetch_metadata(Some(&name), BROKER_TIMEOUT)
        })
        .await??;
        let count = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map_or(0, |t| t.partitions().len());
        let mut manifests = Vec::new();
        for partition in 0..count as i32 {
            let key = (topic.to_owned(), partition);
            match get_manifest(self.tables.objects.as_ref(), &key).await? {
                Some(m) => manifests.push((partition, m)),
                None => return Ok(None),
            }
        }
        Ok((!manifests.is_empty()).then_some(manifests))
    }

    /// Marks the hours every partition of `topic` has closed since the last marked one (the
    /// first time: from the oldest hour any partition wrote). The manifests are read again
    /// after the markers: a write that landed meanwhile in an hour just marked gets its
    /// marker written again, here or by its own writer (which reads `_marked.json` after
    /// its manifest is put).
    pub(super) async fn mark(&self, topic: &str) -> anyhow::Result<()> {
        let Some(manifests) = self.manifests(topic).await? else {
            return Ok(());
        };
        let Some(closed) = manifests.iter().map(|(_, m)| m.closed).min().flatten() else {
            return Ok(());
        };
        let objects = self.tables.objects.as_ref();
        let marked = read_marked(objects, topic).await?;
        if marked.is_some_and(|m| m >= closed) {
            return Ok(());
        }
        let Some(table) = self.topics.get(topic) else {
            return Ok(());
        };
        let datasets = [table.clone(), format!("{}/{table}", tables::QUARANTINE)];
        let first = manifests
            .iter()
            .flat_map(|(_, m)| datasets.iter().filter_map(|d| m.hours.get(d)))
            .filter_map(|hours| hours.keys().next().copied())
            .min();
        let earliest = hour_of(self.tables.clock.now() - self.retention()) + 1;
        let from = marked
            .map_or(first.unwrap_or(closed).min(closed), |m| m + 1)
            .max(earliest);
        for hour in from..=closed {
            for dataset in &datasets {
                self.marker(&manifests, topic, dataset, hour).await?;
            }
        }
        let json = json!({ "through": closed }).to_string();
        objects
            .put(
                &paths::lake_marked(topic),
                PutPayload::from(json.into_bytes()),
            )
            .await?;
        if let Some(again) = self.manifests(topic).await? {
            for hour in from..=closed {
                for dataset in &datasets {
                    if totals(&again, dataset, hour) != totals(&manifests, dataset, hour) {
                        self.marker(&again, topic, dataset, hour).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes the markers of the hours a partition's manifest lists in `remark`, then clears
    /// the list.
    pub(super) async fn remark(&mut self, key: &Key) -> anyhow::Result<()> {
        let Some(remark) = self
            .partitions
            .get(key)
            .and_then(|p| p.manifest.as_ref())
            .map(|m| m.remark.clone())
            .filter(|r| !r.is_empty())
        else {
            return Ok(());
        };
        let Some(manifests) = self.manifests(&key.0).await? else {
            return Ok(());
        };
        for (dataset, hour) in &remark {
            self.marker(&manifests, &key.0, dataset, *hour).await?;
        }
        let objects = self.tables.objects.clone();
        if let Some(manifest) = self
            .partitions
            .get_mut(key)
            .and_then(|p| p.manifest.as_mut())
        {
            manifest.remark.retain(|r| !remark.contains(r));
            put_manifest(objects.as_ref(), key, manifest).await?;
        }
        Ok(())
    }

    /// The `_SUCCESS` of `dataset`'s hour, from the counts of every partition. An empty hour
    /// of a quarantine is not marked (a table's is: it is complete and empty).
    async fn marker(
        &self,
        manifests: &Manifests,
        topic: &str,
        dataset: &str,
        hour: Hour,
    ) -> anyhow::Result<()> {
        let Ok(folder) = self.tables.dataset(dataset) else {
            return Ok(());
        };
        let total = totals(manifests, dataset, hour);
        if total.files == 0 && folder.quarantine {
            return Ok(());
        }
        let sources: Vec<_> = manifests
            .iter()
            .map(|(partition, m)| {
                json!({
                    "source": "kafka",
                    "topic": topic,
                    "partition": partition,
                    "committed": m.committed,
                })
            })
            .collect();
        let marker = json!({
            "rows": total.rows,
            "files": total.files,
            "sources": sources,
            "closed_at": self.tables.clock.now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        });
        let location = paths::lake_success(&folder.partition(hour_start(hour)));
        self.tables
            .objects
            .put(&location, PutPayload::from(marker.to_string().into_bytes()))
            .await
            .with_context(|| format!("writing {location}"))?;
        crate::metrics_table(&self.tables.metrics.lake.hours_closed, dataset).inc();
        Ok(())
    }
}

/// The rows and files every partition counts for one dataset's hour.
fn totals(manifests: &Manifests, dataset: &str, hour: Hour) -> Count {
    let mut total = Count::default();
    for (_, m) in manifests {
        let count = m
            .hours
            .get(dataset)
            .and_then(|h: &BTreeMap<Hour, Count>| h.get(&hour))
            .copied()
            .unwrap_or_default();
        total.rows += count.rows;
        total.files += count.files;
    }
    total
}

pub(super) async fn get_manifest(
    objects: &dyn ObjectStore,
    key: &Key,
) -> anyhow::Result<Option<Manifest>> {
    let path = paths::lake_manifest(&key.0, key.1);
    match objects.get(&path).await {
        Ok(found) => Ok(Some(
            serde_json::from_slice(&found.bytes().await?)
                .with_context(|| format!("reading {path}"))?,
        )),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {path}")),
    }
}

pub(super) async fn put_manifest(
    objects: &dyn ObjectStore,
    key: &Key,
    manifest: &Manifest,
) -> anyhow::Result<()> {
    let path = paths::lake_manifest(&key.0, key.1);
    objects
        .put(&path, PutPayload::from(serde_json::to_vec(manifest)?))
        .await
        .with_context(|| format!("writing {path}"))?;
    Ok(())
}

/// The newest hour marked for every table `topic` feeds.
pub(super) async fn read_marked(
    objects: &dyn ObjectStore,
    topic: &str,
) -> anyhow::Result<Option<Hour>> {
    let path = paths::lake_marked(topic);
    match objects.get(&path).await {
        Ok(found) => {
            let value: serde_json::Value = serde_json::from_slice(&found.bytes().await?)?;
            Ok(value["through"].as_i64())
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {path}")),
    }
}
