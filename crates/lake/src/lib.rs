//! The data lake: every table's records, written each hour as Hive-partitioned Parquet under
//! `lake/` in the object store, kept for the lake retention.
//!
//! Records come in through one door per source: the lifecycle events from the metadata store's
//! event log, the API's requests from the HTTP layer, and declared tables' records from `POST
//! /v1/lake/{table}/records`. Each is checked against its table ([`TableDecl`]) where it comes
//! in, and what does not fit is kept in the table's quarantine with the reason. Kept records
//! wait in the local [`log::RecordLog`], durable, until their hour closes; the [`Writer`]
//! then writes each hour of each table once, sorted by time, and marks it complete with
//! `_SUCCESS`. See ARCHITECTURE.md (the lake) for the exactly-once argument.

mod door;
mod files;
pub mod log;
pub mod manifest;
pub mod parquet;
#[cfg(feature = "kafka")]
mod produce;
mod retention;
#[cfg(feature = "kafka")]
mod stream;
mod writer;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use anyhow::Context;
use imagelake_core::{
    Clock, Timestamp,
    lake::{self as tables, ColumnType, TableDecl},
    paths::{self, LakeTable},
};
use imagelake_runtime::{AppState, lake::ApiRequest, metrics::Metrics};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::sync::{Mutex, mpsc};

#[cfg(feature = "kafka")]
pub use produce::KafkaDoor;
pub use retention::LakeRetention;
#[cfg(feature = "kafka")]
pub use stream::StreamWriter;
pub use writer::Writer;

use crate::log::RecordLog;

/// One folder of the lake: a table, or the quarantine of one.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// `billing_events`, or `quarantine/billing_events`: the key in the log and in metrics.
    pub key: String,
    pub table: LakeTable,
    pub quarantine: bool,
    pub decl: TableDecl,
    /// The columns as written, in file order.
    pub columns: Vec<(String, ColumnType)>,
}

impl Dataset {
    fn new(decl: TableDecl, quarantine: bool) -> anyhow::Result<Self> {
        let table = LakeTable::parse(&decl.name).map_err(anyhow::Error::msg)?;
        let decl = if quarantine {
            TableDecl::quarantine(&decl.name)
        } else {
            decl
        };
        let key = if quarantine {
            format!("{}/{}", tables::QUARANTINE, table)
        } else {
            table.to_string()
        };
        Ok(Self {
            key,
            table,
            quarantine,
            columns: decl.written_columns(),
            decl,
        })
    }

    /// The folder of one hour.
    pub fn partition(&self, hour: Timestamp) -> object_store::path::Path {
        if self.quarantine {
            paths::quarantine_partition(&self.table, hour)
        } else {
            paths::lake_partition(&self.table, hour)
        }
    }

    /// The folder of every hour.
    pub fn folder(&self) -> object_store::path::Path {
        if self.quarantine {
            paths::quarantine_table(&self.table)
        } else {
            paths::lake_table(&self.table)
        }
    }
}

/// What the lake's settings say, in the units the writer uses.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub retention: Duration,
    pub grace: Duration,
    pub budget: parquet::Budget,
    pub max_record_bytes: usize,
}

/// The lake's tables as every process sees them: each dataset's declaration, the limits, and
/// where files go. The embedded [`Lake`] adds its log to it; the Kafka door and writer use it
/// alone.
pub struct Tables {
    objects: Arc<dyn ObjectStore>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    limits: Limits,
    /// Every dataset by key: the built-in tables, the declared ones, and their quarantines.
    datasets: BTreeMap<String, Dataset>,
}

impl Tables {
    /// Checks every declared table against the columns it had before (`lake/<table>/
    /// _schema.json`): a new column is taken, a changed type refuses to start.
    pub async fn open(state: &AppState) -> anyhow::Result<Self> {
        let settings = &state.settings;
        let mut datasets = BTreeMap::new();
        let mut decls = vec![TableDecl::events(), TableDecl::api_requests()];
        for declared in &settings.lake.tables {
            decls.push(evolved(state.objects.as_ref(), declared).await?);
        }
        for decl in decls {
            for quarantine in [false, true] {
                let dataset = Dataset::new(decl.clone(), quarantine)?;
                datasets.insert(dataset.key.clone(), dataset);
            }
        }
        let lake = &settings.lake;
        let limits = Limits {
            retention: settings.lake_retention().0,
            grace: lake.grace.0,
            budget: parquet::Budget::within(lake.max_buffer_bytes, lake.max_file_bytes),
            max_record_bytes: usize::try_from(lake.max_record_bytes).unwrap_or(usize::MAX),
        };
        Ok(Self {
            objects: state.objects.clone(),
            clock: state.clock.clone(),
            metrics: state.metrics.clone(),
            limits,
            datasets,
        })
    }

    pub fn datasets(&self) -> impl Iterator<Item = &Dataset> {
        self.datasets.values()
    }

    fn dataset(&self, key: &str) -> anyhow::Result<&Dataset> {
        self.datasets
            .get(key)
            .with_context(|| format!("no lake table {key} (removed from the settings?)"))
    }
}

/// The lake of one process without brokers: the tables, the log their records wait in, and the
/// buffer of API requests.
pub struct Lake {
    tables: Tables,
    log: RecordLog,
    requests: mpsc::Sender<ApiRequest>,
    /// Taken by the writer.
    requests_in: Mutex<Option<mpsc::Receiver<ApiRequest>>>,
}

impl std::ops::Deref for Lake {
    type Target = Tables;

    fn deref(&self) -> &Tables {
        &self.tables
    }
}

impl Lake {
    /// Opens the log under the data dir, and the tables (see [`Tables::open`]).
    pub async fn open(state: &AppState) -> anyhow::Result<Arc<Self>> {
        let settings = &state.settings;
        let log = RecordLog::open(&settings.data_dir.join("lake.sqlite"))?;
        let tables = Tables::open(state).await?;
        let (requests, requests_in) = mpsc::channel(settings.lake.request_buffer.max(1));
        Ok(Arc::new(Self {
            tables,
            log,
            requests,
            requests_in: Mutex::new(Some(requests_in)),
        }))
    }

    pub fn log(&self) -> &RecordLog {
        &self.log
    }
}

/// The counter of `table` in a per-table family.
fn metrics_table(
    family: &prometheus_client::metrics::family::Family<
        imagelake_runtime::metrics::Labels,
        prometheus_client::metrics::counter::Counter,
    >,
    table: &str,
) -> prometheus_client::metrics::counter::Counter {
    family
        .get_or_create(&vec![("table", table.to_owned())])
        .clone()
}

/// `declared` with the columns its table had before, or the reason it cannot start; records
/// the merged columns for the next start.
async fn evolved(objects: &dyn ObjectStore, declared: &TableDecl) -> anyhow::Result<TableDecl> {
    let table = LakeTable::parse(&declared.name).map_err(anyhow::Error::msg)?;
    let path = paths::lake_schema(&table);
    let known: BTreeMap<String, ColumnType> = match objects.get(&path).await {
        Ok(found) => serde_json::from_slice(&found.bytes().await?)
            .with_context(|| format!("reading {path}"))?,
        Err(object_store::Error::NotFound { .. }) => BTreeMap::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {path}")),
    };
    let columns =
        tables::evolve(&declared.name, &known, &declared.columns).map_err(anyhow::Error::msg)?;
    if columns != known {
        let json = serde_json::to_vec_pretty(&columns)?;
        objects.put(&path, PutPayload::from(json)).await?;
    }
    Ok(TableDecl {
        columns,
        ..declared.clone()
    })
}
