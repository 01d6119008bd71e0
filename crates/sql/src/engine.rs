//! A DataFusion session over the lake: raw tables registered over exactly the hour folders a
//! query needs, results collected, and Parquet written back in one put.

use std::sync::Arc;

use anyhow::Context;
use datafusion::{
    arrow::{
        array::RecordBatch,
        compute::cast,
        datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit},
    },
    datasource::{
        MemTable,
        file_format::parquet::ParquetFormat,
        listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl},
    },
    prelude::{SessionConfig, SessionContext},
};
use imagelake_core::{lake::TableDecl, paths};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, path::Path};
use parquet::{arrow::ArrowWriter, basic::Compression, file::properties::WriterProperties};

/// The URL the object store is registered under.
pub(crate) const STORE_URL: &str = "imagelake://lake";

/// One DataFusion session over the object store.
pub struct Engine {
    ctx: SessionContext,
    objects: Arc<dyn ObjectStore>,
}

impl Engine {
    pub fn new(objects: Arc<dyn ObjectStore>) -> anyhow::Result<Self> {
        // Two partitions: the transforms are small and steady, and leave the cores to the rest.
        let config = SessionConfig::new()
            .with_target_partitions(2)
            .with_information_schema(true);
        let mut ctx = SessionContext::new_with_config(config);
        // These move "cheap" expressions, which the JSON functions claim to be, down to the scan:
        // a JSON field was then parsed for every event of an image rather than for its newest,
        // after the window's filter (twice the work of the whole `images` transform).
        for rule in ["extract_leaf_expressions", "push_down_leaf_projections"] {
            ctx.remove_optimizer_rule(rule);
        }
        datafusion_functions_json::register_all(&mut ctx)?;
        let url = url::Url::parse(STORE_URL)?;
        ctx.register_object_store(&url, objects.clone());
        Ok(Self { ctx, objects })
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Registers `name` as the Parquet files of `table` in the given hour folders (those that
    /// are missing add nothing), with the table's declared columns.
    pub async fn register_hours(
        &self,
        name: &str,
        decl: &TableDecl,
        folders: &[Path],
    ) -> anyhow::Result<()> {
        let schema = imagelake_lake::parquet::schema(&decl.written_columns());
        let mut urls = Vec::new();
        for folder in folders {
            if self.has_files(folder).await? {
                urls.push(ListingTableUrl::parse(format!("{STORE_URL}/{folder}/"))?);
            }
        }
        self.ctx.deregister_table(name)?;
        if urls.is_empty() {
            self.register_batches(name, schema, Vec::new())?;
            return Ok(());
        }
        let options =
            ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(options)
            .with_schema(schema);
        self.ctx
            .register_table(name, Arc::new(ListingTable::try_new(config)?))?;
        Ok(())
    }

    /// Registers `name` as one Parquet object, or as an empty table of `schema` when there is
    /// none.
    pub async fn register_file(
        &self,
        name: &str,
        location: &Path,
        schema: SchemaRef,
    ) -> anyhow::Result<()> {
        self.ctx.deregister_table(name)?;
        match self.objects.head(location).await {
            Ok(_) => {
                let url = ListingTableUrl::parse(format!("{STORE_URL}/{location}"))?;
                let options = ListingOptions::new(Arc::new(ParquetFormat::default()));
                let config = ListingTableConfig::new(url)
                    .with_listing_options(options)
                    .with_schema(schema);
                self.ctx
                    .register_table(name, Arc::new(ListingTable::try_new(config)?))?;
            }
            Err(object_store::Error::NotFound { .. }) => {
                self.register_batches(name, schema, Vec::new())?;
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Registers `name` as the given rows.
    pub fn register_batches(
        &self,
        name: &str,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    ) -> anyhow::Result<()> {
        self.ctx.deregister_table(name)?;
        let table = MemTable::try_new(schema, vec![batches])?;
        self.ctx.register_table(name, Arc::new(table))?;
        Ok(())
    }

    /// Runs one query; returns its schema and rows.
    pub async fn query(&self, sql: &str) -> anyhow::Result<(SchemaRef, Vec<RecordBatch>)> {
        let frame = self.ctx.sql(sql).await?;
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let batches = frame.collect().await?;
        Ok((schema, batches))
    }

    async fn has_files(&self, folder: &Path) -> anyhow::Result<bool> {
        let listing = self.objects.list_with_delimiter(Some(folder)).await?;
        Ok(listing
            .objects
            .iter()
            .any(|o| o.location.as_ref().ends_with(".parquet")))
    }

    /// Writes the rows as one Parquet object (zstd), replacing what was there in one put, so a
    /// reader sees the old file or the new one, never a mix. Timestamps without a zone are
    /// written as UTC microseconds, as the raw tables are. Returns the rows written.
    pub async fn write_parquet(
        &self,
        location: &Path,
        schema: &SchemaRef,
        batches: &[RecordBatch],
    ) -> anyhow::Result<u64> {
        let schema = utc_schema(schema);
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(Default::default()))
            .build();
        let mut writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props))?;
        let mut rows = 0;
        for batch in batches {
            let batch = to_schema(batch, &schema)?;
            rows += batch.num_rows() as u64;
            writer.write(&batch)?;
        }
        let bytes = writer.into_inner()?;
        self.objects
            .put(location, PutPayload::from(bytes))
            .await
            .with_context(|| format!("writing {location}"))?;
        Ok(rows)
    }

    /// Writes a partition's `_SUCCESS` after its file.
    pub async fn mark(&self, partition: &Path, body: serde_json::Value) -> anyhow::Result<()> {
        let location = paths::lake_success(partition);
        self.objects
            .put(&location, PutPayload::from(body.to_string().into_bytes()))
            .await
            .with_context(|| format!("writing {location}"))?;
        Ok(())
    }

    /// Whether `location` exists.
    pub async fn exists(&self, location: &Path) -> anyhow::Result<bool> {
        match self.objects.head(location).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// The schema as written: timestamps as UTC microseconds.
pub(crate) fn utc_schema(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Timestamp(_, _) => f.as_ref().clone().with_data_type(utc_micros()),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

pub fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn to_schema(batch: &RecordBatch, schema: &SchemaRef) -> anyhow::Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(column.clone())
            } else {
                cast(column, field.data_type())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}
