//! Rows in, Parquet files in the lake out: the one path every writer takes. Rows are parsed on
//! a thread of their own, encoded on another, and each file is put while the next one is built,
//! so a write holds at most the budget's batch, row group and two files.

use anyhow::Context;
use arrow_array::RecordBatch;
use imagelake_runtime::objects::delete_if_present;
use object_store::{ObjectStoreExt, PutPayload, path::Path};
use tokio::sync::mpsc;

use crate::{
    Tables,
    parquet::{Batches, Encoder, File},
};

/// Gives each row of a write, in the order they are written, to the function it is handed.
pub(crate) type Feed =
    Box<dyn FnOnce(&mut dyn FnMut(&str) -> anyhow::Result<()>) -> anyhow::Result<()> + Send>;

/// What a write put.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Written {
    pub rows: u64,
    pub files: u64,
}

impl Tables {
    /// Writes the rows `feed` gives as files of dataset `key` in `partition`, named `stem`
    /// followed by their number. Files of the same stem numbered beyond the last are deleted:
    /// left by an earlier write of the same rows that rolled into more files (other settings),
    /// they would double rows.
    pub(crate) async fn write_files(
        &self,
        key: &str,
        partition: &Path,
        stem: &str,
        feed: Feed,
    ) -> anyhow::Result<Written> {
        let dataset = self.dataset(key)?;
        let (files_out, mut files_in) = mpsc::channel::<File>(1);
        let budget = self.limits.budget;
        let columns = dataset.columns.clone();
        let build = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let (batches_out, batches_in) = std::sync::mpsc::sync_channel::<RecordBatch>(2);
            let encode_columns = columns.clone();
            let encoder = std::thread::spawn(move || -> anyhow::Result<()> {
                let mut encoder = Encoder::new(&encode_columns, budget)?;
                for batch in batches_in {
                    if let Some(file) = encoder.write(&batch)? {
                        files_out
                            .blocking_send(file)
                            .context("the writer stopped")?;
                    }
                }
                if let Some(file) = encoder.finish()? {
                    files_out
                        .blocking_send(file)
                        .context("the writer stopped")?;
                }
                Ok(())
            });
            let mut batches = Batches::new(&columns, budget);
            let parsed = feed(&mut |row| {
                if let Some(batch) = batches.push(row)? {
                    batches_out.send(batch).context("the encoder stopped")?;
                }
                Ok(())
            })
            .and_then(|()| {
                if let Some(batch) = batches.finish()? {
                    batches_out.send(batch).context("the encoder stopped")?;
                }
                Ok(())
            });
            drop(batches_out);
            let encoded = encoder
                .join()
                .map_err(|_| anyhow::anyhow!("the encoder panicked"))?;
            parsed.and(encoded)
        });
        let mut written = Written::default();
        while let Some(file) = files_in.recv().await {
            let name = format!("{stem}{:03}", written.files);
            let location = imagelake_core::paths::lake_file(partition, &name);
            let size = file.bytes.len() as u64;
            self.objects
                .put(&location, PutPayload::from(file.bytes))
                .await
                .with_context(|| format!("writing {location}"))?;
            written.rows += file.rows;
            written.files += 1;
            let metrics = &self.metrics.lake;
            crate::metrics_table(&metrics.rows, key).inc_by(file.rows);
            crate::metrics_table(&metrics.bytes, key).inc_by(size);
        }
        build.await??;
        self.delete_beyond(partition, stem, written.files).await?;
        Ok(written)
    }

    /// Deletes every file of the write `stem` in `partition`.
    #[cfg(feature = "kafka")]
    pub(crate) async fn delete_write(&self, partition: &Path, stem: &str) -> anyhow::Result<()> {
        self.delete_beyond(partition, stem, 0).await
    }

    /// Deletes files of the write `stem` numbered `files` or more.
    async fn delete_beyond(&self, partition: &Path, stem: &str, files: u64) -> anyhow::Result<()> {
        let objects = self.objects.as_ref();
        let listing = objects.list_with_delimiter(Some(partition)).await?;
        for meta in listing.objects {
            let Some(name) = meta.location.filename() else {
                continue;
            };
            let index = name
                .strip_prefix(stem)
                .and_then(|rest| rest.strip_suffix(".parquet"))
                .and_then(|n| n.parse::<u64>().ok());
            if index.is_some_and(|n| n >= files) {
                delete_if_present(objects, &meta.location).await?;
            }
        }
        Ok(())
    }
}

#[cfg(feature = "kafka")]
impl Tables {
    /// Which of `wanted` the files in `partition` whose names start with `prefix` hold in
    /// their column `column`, apart from the write `stem`: the ids earlier writes of one
    /// source partition put in an hour. One file is read at a time, and only the ids asked
    /// about are kept, so the memory is one file and the write's own ids.
    pub(crate) async fn ids_written(
        &self,
        partition: &Path,
        prefix: &str,
        stem: &str,
        column: &str,
        wanted: std::collections::HashSet<String>,
    ) -> anyhow::Result<std::collections::HashSet<String>> {
        let wanted = std::sync::Arc::new(wanted);
        let mut found = std::collections::HashSet::new();
        let listing = self.objects.list_with_delimiter(Some(partition)).await?;
        for meta in listing.objects {
            let earlier = meta
                .location
                .filename()
                .is_some_and(|n| n.starts_with(prefix) && !n.starts_with(stem));
            if !earlier {
                continue;
            }
            let bytes = self.objects.get(&meta.location).await?.bytes().await?;
            let (column, wanted) = (column.to_owned(), wanted.clone());
            let ids = tokio::task::spawn_blocking(move || {
                read_ids(bytes, &column, |id| wanted.contains(id))
            })
            .await??;
            found.extend(ids);
        }
        Ok(found)
    }
}

/// The values of one string or integer column of a Parquet file, as strings.
#[cfg(feature = "kafka")]
fn read_ids(
    bytes: bytes::Bytes,
    column: &str,
    keep: impl Fn(&str) -> bool,
) -> anyhow::Result<Vec<String>> {
    use arrow_array::{Array, Int64Array, StringArray};
    use parquet::arrow::{ProjectionMask, arrow_reader::ParquetRecordBatchReaderBuilder};
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
    let mask = ProjectionMask::columns(builder.parquet_schema(), [column]);
    let mut ids = Vec::new();
    for batch in builder.with_projection(mask).build()? {
        let batch = batch?;
        let Some(array) = batch.column_by_name(column) else {
            continue;
        };
        if let Some(strings) = array.as_any().downcast_ref::<StringArray>() {
            ids.extend(
                strings
                    .iter()
                    .flatten()
                    .filter(|id| keep(id))
                    .map(str::to_owned),
            );
        } else if let Some(numbers) = array.as_any().downcast_ref::<Int64Array>() {
            ids.extend(
                numbers
                    .iter()
                    .flatten()
                    .map(|n| n.to_string())
                    .filter(|id| keep(id)),
            );
        }
    }
    Ok(ids)
}
