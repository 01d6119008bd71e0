//! Functions beyond DataFusion's own that dashboards need:
//! - `time_bucket(interval, ts)`: the start of the bucket `ts` falls in (DuckDB's and
//!   TimescaleDB's name for `date_bin`, buckets counted from the Unix epoch);
//! - `hours(from, to)`: a table of one row per hour (`hour`, a UTC timestamp) that starts in
//!   [the hour of `from`, `to`), to left-join on so empty hours show as zeros.

use std::sync::Arc;

use datafusion::{
    arrow::{
        array::{ArrayRef, RecordBatch, RecordBatchOptions, TimestampMicrosecondArray},
        datatypes::{DataType, Field, Schema, TimeUnit},
    },
    catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider},
    common::{DFSchema, Result, ScalarValue, plan_err},
    datasource::MemTable,
    logical_expr::ColumnarValue,
    prelude::SessionContext,
};

/// The most hours `hours()` makes: a year and a bit.
const MAX_HOURS: i64 = 24 * 400;
const MICROS_PER_HOUR: i64 = 3_600_000_000;

pub fn register(ctx: &SessionContext) {
    let date_bin = datafusion::functions::datetime::date_bin();
    ctx.register_udf(date_bin.as_ref().clone().with_aliases(["time_bucket"]));
    ctx.register_udtf("hours", Arc::new(Hours));
}

#[derive(Debug)]
struct Hours;

impl TableFunctionImpl for Hours {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let [from, to] = args.exprs() else {
            return plan_err!("hours(from, to) takes two timestamps");
        };
        let from = constant_micros(&args, from)?;
        let to = constant_micros(&args, to)?;
        // Every hour that starts in [the hour of from, to).
        let Some(first) = from
            .div_euclid(MICROS_PER_HOUR)
            .checked_mul(MICROS_PER_HOUR)
        else {
            return plan_err!("hours(from, to): from is out of range");
        };
        let span = to.checked_sub(first).unwrap_or(i64::MAX);
        let count =
            span.div_euclid(MICROS_PER_HOUR) + i64::from(span.rem_euclid(MICROS_PER_HOUR) > 0);
        if count > MAX_HOURS {
            return plan_err!("hours(from, to) makes at most {MAX_HOURS} hours");
        }
        let count = count.max(0);
        let hours: TimestampMicrosecondArray = (0..count)
            .map(|i| Some(first + i * MICROS_PER_HOUR))
            .collect();
        let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let schema = Arc::new(Schema::new(vec![Field::new("hour", utc, false)]));
        let column: ArrayRef = Arc::new(hours.with_timezone("UTC"));
        let batch = RecordBatch::try_new(schema.clone(), vec![column])?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }
}

/// An argument evaluated once (a literal, `now() - INTERVAL '1 day'`, a cast), as
/// microseconds since the epoch.
fn constant_micros(args: &TableFunctionArgs, expr: &datafusion::logical_expr::Expr) -> Result<i64> {
    let empty = DFSchema::empty();
    let physical = args.session().create_physical_expr(expr.clone(), &empty)?;
    let one_row = RecordBatch::try_new_with_options(
        Arc::new(Schema::empty()),
        vec![],
        &RecordBatchOptions::new().with_row_count(Some(1)),
    )?;
    let value = match physical.evaluate(&one_row)? {
        ColumnarValue::Scalar(v) => v,
        ColumnarValue::Array(a) => ScalarValue::try_from_array(&a, 0)?,
    };
    let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    match value.cast_to(&utc)? {
        ScalarValue::TimestampMicrosecond(Some(v), _) => Ok(v),
        _ => plan_err!("hours(from, to) takes two timestamps, not null"),
    }
}
