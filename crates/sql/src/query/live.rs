//! `live.images` and `live.customers`: the metadata store read at query time, for what the
//! hourly lake cannot answer yet (the last hour's uploads, a customer made a minute ago).
//!
//! They are bounded: `live.images` needs a range on `uploaded_at` or a `LIMIT`; neither view
//! reads more than `sql.max_rows` records, and one whose range or table holds more is refused
//! (narrow it, or add a `LIMIT`) rather than answered from a part. Ranges
//! and limits are taken from the query's literals; its filters still run above, on the records
//! read. A customer's key reads its own records only: the store is asked for that customer's.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::{
    arrow::{
        array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray},
        datatypes::{DataType, Field, Schema, SchemaRef},
    },
    catalog::{Session, TableProvider},
    common::{Result, plan_err},
    datasource::{TableType, memory::MemorySourceConfig},
    error::DataFusionError,
    logical_expr::{Expr, TableProviderFilterPushDown},
    physical_plan::ExecutionPlan,
};
use imagelake_core::{
    Clock, CustomerId,
    records::{Customer, Image},
};
use imagelake_metadata::{ImageQuery, MetadataStore};

use super::time_filter::{time_comparisons, time_range, used_if};
use crate::engine::utc_micros;

/// The column `live.images` is bounded by.
const UPLOADED_AT: &str = "uploaded_at";

/// `live.images`, as one viewer sees it.
pub struct LiveImages {
    pub store: Arc<dyn MetadataStore>,
    pub clock: Arc<dyn Clock>,
    /// `None`: every customer's.
    pub customer: Option<CustomerId>,
    pub max_rows: usize,
}

/// `live.customers`, as one viewer sees it.
pub struct LiveCustomers {
    pub store: Arc<dyn MetadataStore>,
    /// `Some`: that customer only.
    pub customer: Option<CustomerId>,
    pub max_rows: usize,
}

impl std::fmt::Debug for LiveImages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "live.images")
    }
}

impl std::fmt::Debug for LiveCustomers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "live.customers")
    }
}

fn images_schema() -> SchemaRef {
    let text = |n: &str| Field::new(n, DataType::Utf8, true);
    let int = |n: &str| Field::new(n, DataType::Int64, true);
    let time = |n: &str| Field::new(n, utc_micros(), true);
    Arc::new(Schema::new(vec![
        text("image_id"),
        text("customer_id"),
        text("status"),
        text("source"),
        text("filename"),
        text("content_type"),
        int("bytes"),
        text("sha256"),
        time(UPLOADED_AT),
        time("expires_at"),
        time("processed_at"),
        text("format"),
        int("width"),
        int("height"),
        text("error_code"),
    ]))
}

fn customers_schema() -> SchemaRef {
    let text = |n: &str| Field::new(n, DataType::Utf8, true);
    let time = |n: &str| Field::new(n, utc_micros(), true);
    Arc::new(Schema::new(vec![
        text("customer_id"),
        text("name"),
        text("email"),
        text("plan"),
        time("created_at"),
        time("updated_at"),
    ]))
}

fn at(micros: i64) -> Result<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| DataFusionError::Plan("a time out of range".into()))
}

fn store_error(e: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::External(format!("the metadata store: {e}").into())
}

fn exec(
    schema: &SchemaRef,
    batch: RecordBatch,
    projection: Option<&Vec<usize>>,
) -> Result<Arc<dyn ExecutionPlan>> {
    Ok(MemorySourceConfig::try_new_exec(
        &[vec![batch]],
        schema.clone(),
        projection.cloned(),
    )?)
}

#[async_trait]
impl TableProvider for LiveImages {
    fn schema(&self) -> SchemaRef {
        images_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| used_if(!time_comparisons(UPLOADED_AT, std::slice::from_ref(*f)).is_empty()))
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (since, until) = time_range(&time_comparisons(UPLOADED_AT, filters));
        // The row cap's own limit is no bound: only a LIMIT within it is.
        let limit = limit.filter(|&l| l <= self.max_rows);
        if since.is_none() && until.is_none() && limit.is_none() {
            return plan_err!(
                "live.images reads the metadata store: bound it with a range on uploaded_at or a LIMIT of at most {} (sql.max_rows)",
                self.max_rows
            );
        }
        let query = ImageQuery {
            since: since.map(at).transpose()?,
            until: until.map(at).transpose()?,
            after: None,
            limit: limit.unwrap_or(usize::MAX).min(self.max_rows + 1),
            now: self.clock.now(),
        };
        let images = self
            .store
            .list_images(self.customer, &query)
            .await
            .map_err(store_error)?;
        if limit.is_none() && images.len() > self.max_rows {
            return plan_err!(
                "the range on uploaded_at holds more than sql.max_rows images: narrow it or add a LIMIT"
            );
        }
        let schema = images_schema();
        exec(&schema, images_batch(&schema, &images)?, projection)
    }
}

fn images_batch(schema: &SchemaRef, images: &[Image]) -> Result<RecordBatch> {
    let text = |f: &dyn Fn(&Image) -> Option<String>| -> ArrayRef {
        Arc::new(images.iter().map(f).collect::<StringArray>())
    };
    let int = |f: &dyn Fn(&Image) -> Option<i64>| -> ArrayRef {
        Arc::new(images.iter().map(f).collect::<Int64Array>())
    };
    let time = |f: &dyn Fn(&Image) -> Option<chrono::DateTime<chrono::Utc>>| -> ArrayRef {
        let micros: TimestampMicrosecondArray = images
            .iter()
            .map(|i| f(i).map(|t| t.timestamp_micros()))
            .collect();
        Arc::new(micros.with_timezone("UTC"))
    };
    let columns = vec![
        text(&|i| Some(i.id.to_string())),
        text(&|i| Some(i.customer_id.to_string())),
        text(&|i| Some(i.status.as_str().to_owned())),
        text(&|i| i.source.map(|s| s.as_str().to_owned())),
        text(&|i| i.filename.clone()),
        text(&|i| Some(i.content_type.clone())),
        int(&|i| i64::try_from(i.bytes).ok()),
        text(&|i| Some(i.sha256.clone())),
        time(&|i| Some(i.uploaded_at)),
        time(&|i| Some(i.expires_at)),
        time(&|i| i.processed_at),
        text(&|i| i.facts.as_ref().map(|f| f.format.clone())),
        int(&|i| i.facts.as_ref().map(|f| i64::from(f.width))),
        int(&|i| i.facts.as_ref().map(|f| i64::from(f.height))),
        text(&|i| i.error.as_ref().map(|e| e.code.as_str().to_owned())),
    ];
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

#[async_trait]
impl TableProvider for LiveCustomers {
    fn schema(&self) -> SchemaRef {
        customers_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let customers: Vec<Customer> = match self.customer {
            Some(id) => self
                .store
                .get_customer(id)
                .await
                .map_err(store_error)?
                .into_iter()
                .collect(),
            None => {
                let limit = limit.filter(|&l| l <= self.max_rows);
                let read = limit.unwrap_or(usize::MAX).min(self.max_rows + 1);
                let customers = self
                    .store
                    .list_customers(None, read)
                    .await
                    .map_err(store_error)?;
                if limit.is_none() && customers.len() > self.max_rows {
                    return plan_err!(
                        "there are more than sql.max_rows customers: add a LIMIT (the newest come first)"
                    );
                }
                customers
            }
        };
        let schema = customers_schema();
        let text = |f: &dyn Fn(&Customer) -> String| -> ArrayRef {
            Arc::new(
                customers
                    .iter()
                    .map(|c| Some(f(c)))
                    .collect::<StringArray>(),
            )
        };
        let time = |f: &dyn Fn(&Customer) -> i64| -> ArrayRef {
            let micros: TimestampMicrosecondArray = customers.iter().map(|c| Some(f(c))).collect();
            Arc::new(micros.with_timezone("UTC"))
        };
        let columns = vec![
            text(&|c| c.id.to_string()),
            text(&|c| c.name.clone()),
            text(&|c| c.email.clone()),
            text(&|c| c.plan.clone()),
            time(&|c| c.created_at.timestamp_micros()),
            time(&|c| c.updated_at.timestamp_micros()),
        ];
        exec(
            &schema,
            RecordBatch::try_new(schema.clone(), columns)?,
            projection,
        )
    }
}
