//! A customer's key sees only its own rows: every table a customer may query is wrapped in
//! [`OwnRows`], whose scan yields only the rows whose `customer_id` is the customer's, so each
//! table scan of every plan (joins, subqueries, `UNION`, CTEs) reads through the filter, not
//! the SQL text.
//!
//! The filter is a plan node of its own ([`OwnRowsExec`]) that runs the scan inside it: to the
//! optimizer it is a leaf, so no sort, filter, projection or dynamic filter can be placed
//! between the files and the filter, and no expression of the query is ever evaluated on
//! another customer's row: no error, division by zero or cast failure can tell that such a row
//! exists. The query's own filters stay above it. Below it go only bounds the wrapper builds
//! itself from literals (the hours a query's `dt`, `hour` and time-column comparisons allow,
//! and the customer's predicate), so hours are pruned for customers too and row groups whose
//! statistics rule the customer out are skipped, while nothing of the query's text runs on
//! other customers' partition values or rows.

use std::{fmt, sync::Arc};

use async_trait::async_trait;
use datafusion::{
    arrow::{
        array::{AsArray, BooleanArray, RecordBatch},
        compute::{cast, filter_record_batch},
        datatypes::{DataType, SchemaRef},
    },
    catalog::{Session, TableProvider},
    common::{Result, ScalarValue, Statistics, tree_node::TreeNodeRecursion},
    datasource::TableType,
    error::DataFusionError,
    execution::{SendableRecordBatchStream, TaskContext},
    logical_expr::{
        BinaryExpr, Expr, Operator, TableProviderFilterPushDown, col, lit, utils::split_conjunction,
    },
    physical_expr::PhysicalExpr,
    physical_plan::{
        DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, projection::ProjectionExec,
        stream::RecordBatchStreamAdapter,
    },
};
use futures::StreamExt;
use imagelake_core::lake::CUSTOMER_ID;

use super::{catalog::hour_bounds, time_filter::used_if};

/// A table as one customer sees it.
#[derive(Debug)]
pub struct OwnRows {
    inner: Arc<dyn TableProvider>,
    /// The index of `customer_id` in the table's schema.
    column: usize,
    customer: String,
    /// The column that names the hour, for an hourly table.
    time: Option<String>,
    hourly: bool,
}

impl OwnRows {
    /// The table for `customer`, or `None` when it has no `customer_id` (such tables are
    /// nobody's, and invisible to customers).
    pub fn wrap(
        inner: Arc<dyn TableProvider>,
        customer: &str,
        time: Option<&str>,
        hourly: bool,
    ) -> Option<Arc<dyn TableProvider>> {
        let column = inner.schema().index_of(CUSTOMER_ID).ok()?;
        Some(Arc::new(Self {
            inner,
            column,
            customer: customer.to_owned(),
            time: time.map(str::to_owned),
            hourly,
        }))
    }

    /// The partition bounds `filter` implies, rebuilt from its literals: `dt` and `hour`
    /// compared with constants, and ranges of the time column. Empty when it implies none.
    fn bounds(&self, filter: &Expr) -> Vec<Expr> {
        if !self.hourly {
            return Vec::new();
        }
        let mut bounds = Vec::new();
        for conjunct in split_conjunction(filter) {
            if let Some(bound) = partition_bound(conjunct) {
                bounds.push(bound);
            }
        }
        if let Some(time) = &self.time {
            bounds.extend(hour_bounds(time, std::slice::from_ref(filter)));
        }
        bounds
    }
}

/// `dt` or `hour` compared with a constant, rebuilt.
fn partition_bound(expr: &Expr) -> Option<Expr> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = expr else {
        return None;
    };
    let (name, op, value) = match (left.as_ref(), right.as_ref()) {
        (Expr::Column(c), Expr::Literal(v, _)) => (c.name.as_str(), *op, v),
        (Expr::Literal(v, _), Expr::Column(c)) => (c.name.as_str(), op.swap()?, v),
        _ => return None,
    };
    let value = match (name, value) {
        ("dt", ScalarValue::Date32(Some(d))) => ScalarValue::Date32(Some(*d)),
        ("hour", ScalarValue::Int32(Some(h))) => ScalarValue::Int32(Some(*h)),
        _ => return None,
    };
    let column = col(name);
    let value = lit(value);
    Some(match op {
        Operator::Eq => column.eq(value),
        Operator::Lt => column.lt(value),
        Operator::LtEq => column.lt_eq(value),
        Operator::Gt => column.gt(value),
        Operator::GtEq => column.gt_eq(value),
        _ => return None,
    })
}

#[async_trait]
impl TableProvider for OwnRows {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    /// The query's filters all stay above the customer's filter; those that imply partition
    /// bounds are also seen by the scan ([`Self::bounds`]).
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| used_if(!self.bounds(f).is_empty()))
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let width = self.schema().fields().len();
        let wanted: Vec<usize> = projection.cloned().unwrap_or_else(|| (0..width).collect());
        let mut read = wanted.clone();
        if !read.contains(&self.column) {
            read.push(self.column);
        }
        let mut below: Vec<Expr> = filters.iter().flat_map(|f| self.bounds(f)).collect();
        below.push(col(CUSTOMER_ID).eq(lit(self.customer.clone())));
        let scan = self.inner.scan(state, Some(&read), &below, None).await?;
        let position = read.iter().position(|&i| i == self.column).unwrap_or(0);
        let own: Arc<dyn ExecutionPlan> =
            Arc::new(OwnRowsExec::new(scan, position, self.customer.clone()));
        if read.len() == wanted.len() {
            return Ok(own);
        }
        let schema = own.schema();
        let columns = (0..wanted.len()).map(|i| {
            let field = schema.field(i);
            let column: Arc<dyn PhysicalExpr> = Arc::new(
                datafusion::physical_expr::expressions::Column::new(field.name(), i),
            );
            (column, field.name().clone())
        });
        Ok(Arc::new(ProjectionExec::try_new(columns, own)?))
    }
}

/// The rows of its scan whose `column` is the customer's; everything else is dropped before
/// any other node sees it. The scan runs inside: the node is a leaf of the plan.
#[derive(Debug)]
pub struct OwnRowsExec {
    scan: Arc<dyn ExecutionPlan>,
    column: usize,
    customer: String,
    properties: Arc<PlanProperties>,
}

impl OwnRowsExec {
    fn new(scan: Arc<dyn ExecutionPlan>, column: usize, customer: String) -> Self {
        let properties = scan.properties().clone();
        Self {
            scan,
            column,
            customer,
            properties,
        }
    }
}

impl DisplayAs for OwnRowsExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "OwnRowsExec: customer_id = <the caller's>")
    }
}

impl ExecutionPlan for OwnRowsExec {
    fn name(&self) -> &str {
        "OwnRowsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !children.is_empty() {
            return Err(DataFusionError::Internal("OwnRowsExec is a leaf".into()));
        }
        Ok(self)
    }

    /// Unknown, always: the files' statistics count every customer's rows, so a `count(*)` or
    /// `max` answered from them would tell a customer about the others.
    fn partition_statistics(&self, _partition: Option<usize>) -> Result<Arc<Statistics>> {
        Ok(Arc::new(Statistics::new_unknown(&self.schema())))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.scan.execute(partition, context)?;
        let schema = input.schema();
        let column = self.column;
        let customer = self.customer.clone();
        let own = input.map(move |batch| own_rows(&batch?, column, &customer));
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, own)))
    }
}

fn own_rows(batch: &RecordBatch, column: usize, customer: &str) -> Result<RecordBatch> {
    let ids = cast(batch.column(column), &DataType::Utf8)?;
    let ids = ids.as_string::<i32>();
    let mask: BooleanArray = ids.iter().map(|id| Some(id == Some(customer))).collect();
    Ok(filter_record_batch(batch, &mask)?)
}
