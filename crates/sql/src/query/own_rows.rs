//! A customer's key sees only its own rows: every table a customer may query is wrapped in
//! [`OwnRows`], whose scan yields only the rows whose `customer_id` is the customer's, so each
//! table scan of every plan (joins, subqueries, `UNION`, CTEs) reads through the filter, not
//! the SQL text.
//!
//! The filter is its own plan node ([`OwnRowsExec`]) directly on the scan, and the wrapper
//! takes none of the query's own filters: so no expression of the query is ever evaluated on
//! another customer's row, and no error, division by zero or cast failure can tell that such
//! a row exists. The scan below gets the customer's predicate as a hint only (row groups
//! whose statistics rule the customer out are skipped).

use std::{fmt, sync::Arc};

use async_trait::async_trait;
use datafusion::{
    arrow::{
        array::{AsArray, BooleanArray, RecordBatch},
        compute::{cast, filter_record_batch},
        datatypes::{DataType, SchemaRef},
    },
    catalog::{Session, TableProvider},
    common::{Result, tree_node::TreeNodeRecursion},
    datasource::TableType,
    error::DataFusionError,
    execution::{SendableRecordBatchStream, TaskContext},
    logical_expr::{Expr, TableProviderFilterPushDown, col, lit},
    physical_expr::PhysicalExpr,
    physical_plan::{
        DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, projection::ProjectionExec,
        stream::RecordBatchStreamAdapter,
    },
};
use futures::StreamExt;
use imagelake_core::lake::CUSTOMER_ID;

/// A table as one customer sees it.
#[derive(Debug)]
pub struct OwnRows {
    inner: Arc<dyn TableProvider>,
    /// The index of `customer_id` in the table's schema.
    column: usize,
    customer: String,
}

impl OwnRows {
    /// The table for `customer`, or `None` when it has no `customer_id` (such tables are
    /// nobody's, and invisible to customers).
    pub fn wrap(inner: Arc<dyn TableProvider>, customer: &str) -> Option<Arc<dyn TableProvider>> {
        let column = inner.schema().index_of(CUSTOMER_ID).ok()?;
        Some(Arc::new(Self {
            inner,
            column,
            customer: customer.to_owned(),
        }))
    }
}

#[async_trait]
impl TableProvider for OwnRows {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    /// None of the query's filters go below the customer's filter.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![
            TableProviderFilterPushDown::Unsupported;
            filters.len()
        ])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let width = self.schema().fields().len();
        let wanted: Vec<usize> = projection.cloned().unwrap_or_else(|| (0..width).collect());
        let mut read = wanted.clone();
        if !read.contains(&self.column) {
            read.push(self.column);
        }
        let hint = col(CUSTOMER_ID).eq(lit(self.customer.clone()));
        let scan = self.inner.scan(state, Some(&read), &[hint], None).await?;
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

/// The rows of its input whose `column` is the customer's; everything else is dropped before
/// any other node sees it.
#[derive(Debug)]
pub struct OwnRowsExec {
    input: Arc<dyn ExecutionPlan>,
    column: usize,
    customer: String,
    properties: Arc<PlanProperties>,
}

impl OwnRowsExec {
    fn new(input: Arc<dyn ExecutionPlan>, column: usize, customer: String) -> Self {
        let properties = input.properties().clone();
        Self {
            input,
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
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal(
                "OwnRowsExec has one child".into(),
            ));
        }
        Ok(Arc::new(Self::new(
            children.swap_remove(0),
            self.column,
            self.customer.clone(),
        )))
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
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
