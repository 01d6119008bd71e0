//! Functions beyond DataFusion's own that dashboards need:
//! - `time_bucket(interval, ts)`: the start of the bucket `ts` falls in (DuckDB's and
//!   TimescaleDB's name for `date_bin`, buckets counted from the Unix epoch);
//! - `hours(from, to)`: a table of one row per hour (`hour`, a UTC timestamp) that starts in
//!   [the hour of `from`, `to`), to left-join on so empty hours show as zeros.
//!
//! And DataFusion's functions that make a value of any size from a count (`repeat`, `lpad`,
//! `rpad`, `array_repeat`), [`Bounded`]: their output is allocated outside the query's memory
//! pool, in one step no timeout can interrupt, so a call is refused before it runs when its
//! values would need more than the memory cap.

use std::sync::Arc;

use datafusion::{
    arrow::{
        array::{
            Array, ArrayRef, Int64Array, RecordBatch, RecordBatchOptions, TimestampMicrosecondArray,
        },
        compute::{cast, kernels::length::length},
        datatypes::{DataType, Field, Schema, TimeUnit},
    },
    catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider},
    common::{DFSchema, DataFusionError, Result, ScalarValue, plan_err},
    datasource::MemTable,
    execution::FunctionRegistry,
    logical_expr::{
        ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
        udf_eq::UdfEq,
    },
    prelude::SessionContext,
};

/// The most hours `hours()` makes: a year and a bit.
const MAX_HOURS: i64 = 24 * 400;
const MICROS_PER_HOUR: i64 = 3_600_000_000;

/// Registers the functions above; `max_bytes` is the query's memory cap.
pub fn register(ctx: &SessionContext, max_bytes: u64) {
    let date_bin = datafusion::functions::datetime::date_bin();
    ctx.register_udf(date_bin.as_ref().clone().with_aliases(["time_bucket"]));
    ctx.register_udtf("hours", Arc::new(Hours));
    let growing = [
        ("repeat", Growth::Repeat),
        ("lpad", Growth::Pad),
        ("rpad", Growth::Pad),
        ("array_repeat", Growth::Elements),
    ];
    for (name, growth) in growing {
        if let Ok(inner) = ctx.udf(name) {
            let bounded = Bounded {
                inner: inner.inner().clone().into(),
                growth,
                max_bytes,
            };
            ctx.register_udf(ScalarUDF::new_from_impl(bounded));
        }
    }
}

/// How a function's output grows with its count (the argument after the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// `repeat(text, n)`: the text's bytes, n times.
    Repeat,
    /// `lpad`/`rpad(text, n, fill)`: n characters of at most 4 bytes.
    Pad,
    /// `array_repeat(element, n)`: n copies of the element.
    Elements,
}

/// One of DataFusion's functions, refused before it runs when the values it would make in
/// one batch need more than `max_bytes`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: UdfEq<Arc<dyn ScalarUDFImpl>>,
    growth: Growth,
    max_bytes: u64,
}

impl Bounded {
    /// The bytes the call would make, at least.
    fn bytes(&self, args: &ScalarFunctionArgs) -> Result<u128> {
        let rows = args.number_rows.max(1);
        let [first, count, ..] = args.args.as_slice() else {
            return Ok(0);
        };
        let counts = cast(&count.to_array(rows)?, &DataType::Int64)?;
        let counts = counts
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| DataFusionError::Internal("a count is an integer".into()))?;
        let first = first.to_array(rows)?;
        let each: Vec<u128> = match self.growth {
            Growth::Repeat => {
                let lengths = cast(&length(&first)?, &DataType::Int64)?;
                let lengths = lengths
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .ok_or_else(|| DataFusionError::Internal("lengths are integers".into()))?;
                lengths
                    .iter()
                    .map(|l| l.unwrap_or(0).max(0) as u128)
                    .collect()
            }
            Growth::Pad => vec![4; rows],
            Growth::Elements => {
                let per_row = first.get_buffer_memory_size() / first.len().max(1);
                vec![per_row.max(1) as u128; rows]
            }
        };
        Ok(counts
            .iter()
            .zip(each)
            .map(|(n, each)| n.unwrap_or(0).max(0) as u128 * each)
            .sum())
    }
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let bytes = self.bytes(&args)?;
        if bytes > u128::from(self.max_bytes) {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{}() would make {bytes} bytes in one step, more than the SQL memory cap \
                 (sql.max_memory_bytes = {}); ask for smaller values",
                self.inner.name(),
                self.max_bytes
            )));
        }
        self.inner.invoke_with_args(args)
    }
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
