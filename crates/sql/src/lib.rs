//! SQL over the lake, with DataFusion: the transforms of the `lake-transform` job (the Dataflow
//! role), and the query layer of the analysts' doors (the BigQuery role): `imagelake sql`,
//! `POST /v1/sql`, and the Postgres wire.
//!
//! DataFusion reads the lake through the same `Arc<dyn ObjectStore>` the writer writes with
//! (local files, GCS), registered under the URL scheme `imagelake://`. The SQL itself is kept
//! portable between DataFusion and DuckDB (JSON with `->`/`->>`, ordered-set percentiles,
//! timestamps cast to `TIMESTAMP` and written back as UTC), so the same files can be checked,
//! or run, by DuckDB on the same Parquet.

pub mod bigquery;
pub mod engine;
pub mod format;
pub mod query;
pub mod transform;

pub use datafusion;
pub use query::{
    Answer, Asker, Described, Query, QueryEngine, QueryError, SessionSetup, SharedEngine, Sql,
    Viewer,
};
pub use transform::Transforms;
