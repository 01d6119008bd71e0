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
            Array, ArrayRef, AsArray, Int64Array, RecordBatch, RecordBatchOptions,
            TimestampMicrosecondArray,
        },
        compute::{cast, kernels::length::length},
        datatypes::{DataType, Field, Schema, TimeUnit},
    },
    catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider},
    common::{DFSchema, DataFusionError, Result, ScalarValue, exec_err, plan_err},
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
    /// The bytes the call would make at least: each row's copies, the largest row once more
    /// (the buffer a row is built in), and a constant first argument spread to every row.
    fn bytes(&self, args: &ScalarFunctionArgs) -> Result<u128> {
        let [first, count, ..] = args.args.as_slice() else {
            return Ok(0);
        };
        let constant = |a: &ColumnarValue| matches!(a, ColumnarValue::Scalar(_));
        let rows = if args.args.iter().all(constant) {
            1
        } else {
            args.number_rows.max(1)
        };
        let counts = integers(count, rows)?;
        if self.growth == Growth::Pad
            && let Some(n) = counts.iter().find(|n| **n < 0)
        {
            return exec_err!(
                "{}() takes a length of 0 or more, not {n}",
                self.inner.name()
            );
        }
        let sizes = match first {
            ColumnarValue::Scalar(value) => vec![self.size_of(value); rows],
            ColumnarValue::Array(array) => self.sizes_of(array)?,
        };
        let spread = match first {
            ColumnarValue::Scalar(value) if rows > 1 => rows as u128 * scalar_bytes(value),
            _ => 0,
        };
        let made: Vec<u128> = counts
            .iter()
            .zip(sizes)
            .map(|(n, size)| (*n).max(0) as u128 * size)
            .collect();
        let largest = made.iter().copied().max().unwrap_or(0);
        Ok(made.iter().sum::<u128>() + largest + spread)
    }

    /// What one copy of a constant first argument takes.
    fn size_of(&self, value: &ScalarValue) -> u128 {
        match self.growth {
            Growth::Repeat => scalar_bytes(value),
            Growth::Pad => 4,
            // An index to take it from, and its copy.
            Growth::Elements => 16 + value.size() as u128,
        }
    }

    /// What one copy of each row's first argument takes.
    fn sizes_of(&self, array: &ArrayRef) -> Result<Vec<u128>> {
        Ok(match self.growth {
            Growth::Repeat => lengths(array)?,
            Growth::Pad => vec![4; array.len()],
            Growth::Elements => element_sizes(array)?
                .into_iter()
                .map(|bytes| 16 + bytes)
                .collect(),
        })
    }
}

/// A count argument, row by row (null as 0).
fn integers(value: &ColumnarValue, rows: usize) -> Result<Vec<i64>> {
    match value {
        ColumnarValue::Scalar(scalar) => {
            let n = match scalar.cast_to(&DataType::Int64)? {
                ScalarValue::Int64(n) => n.unwrap_or(0),
                _ => 0,
            };
            Ok(vec![n; rows])
        }
        ColumnarValue::Array(array) => Ok(int64(&cast(array, &DataType::Int64)?)?),
    }
}

fn int64(array: &ArrayRef) -> Result<Vec<i64>> {
    let values = array
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| DataFusionError::Internal("integers expected".into()))?;
    Ok(values.iter().map(|v| v.unwrap_or(0)).collect())
}

/// The bytes of a text or binary value; 0 for anything else.
fn scalar_bytes(value: &ScalarValue) -> u128 {
    match value {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => s.len() as u128,
        ScalarValue::Binary(Some(b))
        | ScalarValue::LargeBinary(Some(b))
        | ScalarValue::BinaryView(Some(b)) => b.len() as u128,
        _ => 0,
    }
}

/// Each row's bytes, for text and binary columns.
fn lengths(array: &ArrayRef) -> Result<Vec<u128>> {
    let bytes = cast(&length(array)?, &DataType::Int64)?;
    Ok(int64(&bytes)?
        .into_iter()
        .map(|n| n.max(0) as u128)
        .collect())
}

/// Each row's value as an element of a list: its bytes (text, binary), eight a value it holds
/// (lists), or its width.
fn element_sizes(array: &ArrayRef) -> Result<Vec<u128>> {
    Ok(match array.data_type() {
        DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView => lengths(array)?,
        DataType::List(_) => {
            let list = array.as_list::<i32>();
            (0..list.len())
                .map(|i| 8 * list.value_length(i).max(0) as u128)
                .collect()
        }
        DataType::LargeList(_) => {
            let list = array.as_list::<i64>();
            (0..list.len())
                .map(|i| 8 * list.value_length(i).max(0) as u128)
                .collect()
        }
        other => vec![other.primitive_width().unwrap_or(8) as u128; array.len()],
    })
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
