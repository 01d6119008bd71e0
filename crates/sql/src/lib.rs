//! SQL over the lake, with DataFusion: the transforms of the `lake-transform` job (the Dataflow
//! role) now, the analysts' query doors next.
//!
//! DataFusion reads the lake through the same `Arc<dyn ObjectStore>` the writer writes with
//! (local files, GCS), registered under the URL scheme `imagelake://`. The SQL itself is kept
//! portable between DataFusion and DuckDB (JSON with `->`/`->>`, ordered-set percentiles,
//! timestamps cast to `TIMESTAMP` and written back as UTC), so the same files can be checked,
//! or run, by DuckDB on the same Parquet.

pub mod engine;
pub mod transform;

pub use datafusion;
pub use transform::Transforms;
