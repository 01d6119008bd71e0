//! The query layer every SQL door shares (the CLI, `POST /v1/sql`, the Postgres wire): one
//! call, [`QueryEngine::run`], takes who is asking, the SQL text and its parameters, and gives
//! the answer or a [`QueryError`] with the API's code.
//!
//! Each query gets a session of its own: its tables as the caller may see them (a customer's
//! key sees its own rows of the tables that have a `customer_id`, and no other table), its own
//! memory pool (`sql.max_memory_bytes`, no spilling to disk; the answer held counts too), and
//! the row cap (`sql.max_rows`, one row more is asked for to know the answer was cut). Only
//! reads are planned ([`guard`]). Queries are planned and run on threads of their own
//! ([`QueryRuntime`]), so however busy they keep the cores, the process's server and timers go
//! on; the whole query runs within `sql.timeout`, and dropping its future (a client gone)
//! cancels it. A key may run `sql.max_concurrent_per_key` queries at
//! once. Every query is logged and counted, with its outcome. Between queries the engine keeps
//! only the files' footers and statistics ([`FileCaches`]); the file lists are read afresh.

mod catalog;
pub mod error;
mod functions;
pub mod guard;
mod live;
mod own_rows;
mod time_filter;

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use datafusion::{
    arrow::{array::RecordBatch, datatypes::SchemaRef},
    catalog::MemorySchemaProvider,
    common::{ParamValues, ScalarValue, TableReference},
    execution::{
        cache::cache_manager::{CacheManager, CacheManagerConfig, FileMetadataCache},
        disk_manager::{DiskManagerBuilder, DiskManagerMode},
        memory_pool::{MemoryConsumer, MemoryReservation},
        runtime_env::RuntimeEnvBuilder,
    },
    logical_expr::LogicalPlan,
    prelude::{SessionConfig, SessionContext},
};
use futures::StreamExt;
use imagelake_core::{Clock, CustomerId, ErrorCode, lake::QUARANTINE};
use imagelake_metadata::MetadataStore;
use imagelake_runtime::{AppState, metrics::Metrics, settings::Sql as Limits};
use object_store::ObjectStore;

pub use catalog::{Catalog, TableDef};
pub use error::{Position, QueryError};

use crate::engine::STORE_URL;

/// The schema of the metadata store's live views.
const LIVE: &str = "live";

/// Whose query it is, which decides the rows it sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer {
    /// The admin token, or the operator on the machine: every row.
    Admin,
    /// An `analyst` key: every row.
    Analyst,
    /// A customer's key: its own rows only.
    Customer(CustomerId),
}

/// A query as a door hands it over.
pub struct Query {
    pub sql: Sql,
    /// The values of `$1`, `$2`, ...
    pub params: ParamValues,
    /// What the door adds to the query's session (the Postgres door: `pg_catalog` and the
    /// functions its clients call).
    pub setup: Option<SessionSetup>,
}

/// The statement of a query: text the engine parses, or a statement the door parsed in its
/// own dialect (checked by [`guard`] all the same).
pub enum Sql {
    Text(String),
    Parsed(Box<datafusion::sql::parser::Statement>),
}

/// A door's additions to each query's session.
pub type SessionSetup = Arc<dyn Fn(&SessionContext) -> datafusion::error::Result<()> + Send + Sync>;

/// What a statement takes and gives, known before it runs: its parameters' types (by their
/// number, `None` where nothing decides one) and its columns.
#[derive(Debug, Clone)]
pub struct Described {
    pub params: Vec<Option<datafusion::arrow::datatypes::DataType>>,
    pub schema: SchemaRef,
}

/// A process's query engine, made on its first query (it plans the transforms' SQL to know
/// their columns) and shared by every door, so all their queries count against the same
/// limits.
#[derive(Clone, Default)]
pub struct SharedEngine(Arc<tokio::sync::OnceCell<Arc<QueryEngine>>>);

impl SharedEngine {
    pub async fn get(&self, state: &AppState) -> anyhow::Result<Arc<QueryEngine>> {
        self.0
            .get_or_try_init(|| async { QueryEngine::new(state).await.map(Arc::new) })
            .await
            .cloned()
    }
}

/// Who asks, through which door.
#[derive(Debug, Clone)]
pub struct Asker {
    pub viewer: Viewer,
    /// The key id, or `admin`: the concurrency cap and the logs go by it.
    pub key: String,
    /// `http`, `cli` or `pg`.
    pub door: &'static str,
}

/// A query's rows, up to the row cap.
#[derive(Debug)]
pub struct Answer {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub rows: u64,
    /// More rows than `sql.max_rows` were found; those past it are not here.
    pub truncated: bool,
    /// The query's slot and the memory its rows take, given back when the answer is dropped
    /// (after a door has sent it).
    pub held: Held,
}

/// What an answer holds of the engine's limits until it is dropped.
#[derive(Default)]
pub struct Held {
    slot: Option<Slot>,
    memory: Option<MemoryReservation>,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held")
            .field("slot", &self.slot.is_some())
            .field("memory", &self.memory.as_ref().map(MemoryReservation::size))
            .finish()
    }
}

/// Queries running, per key and in all.
#[derive(Default)]
struct Slots {
    per_key: Mutex<(HashMap<String, u32>, u32)>,
}

/// One running query's place in [`Slots`], and in the running gauge.
struct Slot {
    slots: Arc<Slots>,
    key: String,
    metrics: Arc<Metrics>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut guard = self.slots.per_key.lock().unwrap_or_else(|e| e.into_inner());
        let (per_key, total) = &mut *guard;
        *total = total.saturating_sub(1);
        if let Some(count) = per_key.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                per_key.remove(&self.key);
            }
        }
        self.metrics.sql.running.dec();
    }
}

pub struct QueryEngine {
    planner: Arc<Planner>,
    slots: Arc<Slots>,
    metrics: Arc<Metrics>,
    runtime: QueryRuntime,
}

/// What a query needs to be planned and run, shared with its task on the query runtime.
struct Planner {
    objects: Arc<dyn ObjectStore>,
    store: Arc<dyn MetadataStore>,
    clock: Arc<dyn Clock>,
    catalog: Catalog,
    limits: Limits,
    caches: FileCaches,
}

/// The threads queries are planned and run on, apart from the process's own: queries that keep
/// every core busy leave the HTTP server, its health checks and its timers (the SQL timeout
/// among them) free to answer. Stacks are 64 MiB, as planning walks deep expressions
/// recursively.
struct QueryRuntime(Option<tokio::runtime::Runtime>);

impl QueryRuntime {
    fn new() -> std::io::Result<Self> {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("sql")
            .thread_stack_size(64 << 20)
            .enable_all()
            .build()?;
        Ok(Self(Some(runtime)))
    }

    fn spawn(
        &self,
        query: impl Future<Output = Result<Answer, QueryError>> + Send + 'static,
    ) -> Spawned {
        match &self.0 {
            Some(runtime) => Spawned(runtime.spawn(query)),
            None => unreachable!("the query runtime lives as long as the engine"),
        }
    }
}

impl Drop for QueryRuntime {
    /// Without waiting: the engine may be dropped on an async thread, where blocking is not
    /// allowed, and its queries' callers are gone.
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// A query's task on the query runtime; dropping it (a timeout, a caller gone) aborts the
/// query at its next step.
struct Spawned(tokio::task::JoinHandle<Result<Answer, QueryError>>);

impl Future for Spawned {
    type Output = Result<Answer, QueryError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|joined| {
            joined.unwrap_or_else(|e| {
                Err(QueryError::new(
                    ErrorCode::Internal,
                    format!("the query stopped: {e}"),
                ))
            })
        })
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the engine keeps of the lake's files from one query to the next: their Parquet
/// footers and the statistics read from them. Entries are checked against each file's size and
/// modification time when used; the file lists are not kept (a query sees the files written
/// since the last one).
struct FileCaches {
    statistics: catalog::FileStatistics,
    footers: Arc<FileMetadataCache>,
}

impl FileCaches {
    fn new() -> datafusion::error::Result<Self> {
        let made = CacheManager::try_new(&CacheManagerConfig::default())?;
        Ok(Self {
            statistics: made.get_file_statistic_cache(),
            footers: made.get_file_metadata_cache(),
        })
    }

    /// A query's cache settings: these caches, and a list of files of its own.
    fn config(&self) -> CacheManagerConfig {
        CacheManagerConfig::default()
            .with_file_statistics_cache(self.statistics.clone())
            .with_file_metadata_cache(Some(self.footers.clone()))
    }
}

impl QueryEngine {
    /// The engine over the lake and the metadata store of `state`.
    pub async fn new(state: &AppState) -> anyhow::Result<Self> {
        let planner = Planner {
            objects: state.objects.clone(),
            store: state.store.clone(),
            clock: state.clock.clone(),
            catalog: Catalog::new(&state.settings).await?,
            limits: state.settings.sql.clone(),
            caches: FileCaches::new()?,
        };
        Ok(Self {
            planner: Arc::new(planner),
            slots: Arc::default(),
            metrics: state.metrics.clone(),
            runtime: QueryRuntime::new()?,
        })
    }

    pub fn catalog(&self) -> &Catalog {
        &self.planner.catalog
    }

    pub fn limits(&self) -> &Limits {
        &self.planner.limits
    }

    /// Runs one read-only statement for `asker`, with JSON parameters.
    pub async fn run(
        &self,
        asker: &Asker,
        sql: &str,
        params: &[serde_json::Value],
    ) -> Result<Answer, QueryError> {
        let query = Query {
            sql: Sql::Text(sql.to_owned()),
            params: param_values(params)?,
            setup: None,
        };
        self.query(asker, query).await
    }

    /// Runs one read-only query for `asker`.
    pub async fn query(&self, asker: &Asker, query: Query) -> Result<Answer, QueryError> {
        let mut record = Running::start(self, asker)?;
        let run = self.planner.clone().execute(asker.viewer, query);
        let outcome = self.within_timeout(self.runtime.spawn(run)).await;
        record.finish(&outcome);
        outcome.map(|mut answer| {
            answer.held.slot = record.slot.take();
            answer
        })
    }

    /// Plans a query without running it: what the Postgres door's clients ask before they bind
    /// parameters (a prepared statement's Describe).
    pub async fn describe(&self, asker: &Asker, query: Query) -> Result<Described, QueryError> {
        let planner = self.planner.clone();
        let viewer = asker.viewer;
        let plan = async move {
            let (_, plan) = planner.plan(viewer, query.sql, query.setup).await?;
            describe(&plan)
        };
        let handle = match &self.runtime.0 {
            Some(runtime) => runtime.spawn(plan),
            None => unreachable!("the query runtime lives as long as the engine"),
        };
        let aborted = AbortOnDrop(handle.abort_handle());
        let outcome = self
            .within_timeout(async {
                handle.await.unwrap_or_else(|e| {
                    Err(QueryError::new(
                        ErrorCode::Internal,
                        format!("planning stopped: {e}"),
                    ))
                })
            })
            .await;
        drop(aborted);
        outcome
    }

    /// `work`, or `query_timeout` past `sql.timeout`.
    async fn within_timeout<T>(
        &self,
        work: impl Future<Output = Result<T, QueryError>>,
    ) -> Result<T, QueryError> {
        let limit = self.limits().timeout;
        tokio::time::timeout(limit.0, work)
            .await
            .unwrap_or_else(|_| {
                Err(QueryError::new(
                    ErrorCode::QueryTimeout,
                    format!("the query ran past the SQL timeout ({limit}) and was cancelled"),
                ))
            })
    }

    /// Takes one of the key's query slots and one of the process's, or refuses.
    fn take_slot(&self, key: &str) -> Result<Slot, QueryError> {
        let mut guard = self.slots.per_key.lock().unwrap_or_else(|e| e.into_inner());
        let (per_key, total) = &mut *guard;
        if *total >= self.limits().max_concurrent {
            return Err(QueryError::new(
                ErrorCode::RateLimited,
                format!("{total} queries are running (sql.max_concurrent); try again in a moment"),
            ));
        }
        let count = per_key.entry(key.to_owned()).or_default();
        if *count >= self.limits().max_concurrent_per_key {
            return Err(QueryError::new(
                ErrorCode::RateLimited,
                format!(
                    "this key already runs {} queries (sql.max_concurrent_per_key); wait for one to end",
                    *count
                ),
            ));
        }
        *count += 1;
        *total += 1;
        self.metrics.sql.running.inc();
        Ok(Slot {
            slots: self.slots.clone(),
            key: key.to_owned(),
            metrics: self.metrics.clone(),
        })
    }
}

/// Aborts a task when dropped (its caller gone, or a timeout).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A plan's parameter types in the order of their numbers (a parameter the plan leaves untyped
/// takes the type it is cast to, `$1::bigint`), and its columns.
fn describe(plan: &LogicalPlan) -> Result<Described, QueryError> {
    let mut types = plan
        .get_parameter_types()
        .map_err(|e| QueryError::from_engine(&e))?;
    for (name, ty) in cast_placeholders(plan) {
        if let Some(slot @ None) = types.get_mut(&name) {
            *slot = Some(ty);
        }
    }
    let mut numbered: Vec<(usize, Option<datafusion::arrow::datatypes::DataType>)> = types
        .into_iter()
        .filter_map(|(name, ty)| Some((name.strip_prefix('$')?.parse().ok()?, ty)))
        .collect();
    numbered.sort_by_key(|(n, _)| *n);
    let count = numbered.last().map_or(0, |(n, _)| *n);
    let mut params = vec![None; count];
    for (n, ty) in numbered {
        if n > 0 {
            params[n - 1] = ty;
        }
    }
    Ok(Described {
        params,
        schema: Arc::new(plan.schema().as_arrow().clone()),
    })
}

/// The placeholders the plan casts, with the type each is cast to.
fn cast_placeholders(plan: &LogicalPlan) -> Vec<(String, datafusion::arrow::datatypes::DataType)> {
    use datafusion::{
        common::tree_node::{TreeNode, TreeNodeRecursion},
        logical_expr::{Cast, Expr, TryCast},
    };
    let mut found = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                let cast = match e {
                    Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) => {
                        Some((expr, field.data_type()))
                    }
                    _ => None,
                };
                if let Some((inner, ty)) = cast
                    && let Expr::Placeholder(p) = inner.as_ref()
                {
                    found.push((p.id.clone(), ty.clone()));
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    found
}

impl Planner {
    /// Checks the statement, makes the caller's session and plans it, refusing anything that
    /// would write.
    async fn plan(
        &self,
        viewer: Viewer,
        sql: Sql,
        setup: Option<SessionSetup>,
    ) -> Result<(SessionContext, LogicalPlan), QueryError> {
        let engine = |e: datafusion::error::DataFusionError| QueryError::from_engine(&e);
        let statement = match sql {
            Sql::Text(text) => guard::statement(&text)?,
            Sql::Parsed(statement) => guard::parsed(*statement)?,
        };
        if matches!(viewer, Viewer::Customer(_)) && guard::is_explain(&statement) {
            return Err(QueryError::forbidden(
                "EXPLAIN is for analyst keys: plans count the rows of whole files",
            ));
        }
        let ctx = self.session(viewer).map_err(engine)?;
        if let Some(setup) = setup {
            setup(&ctx).map_err(engine)?;
        }
        let plan = ctx
            .state()
            .statement_to_plan(statement)
            .await
            .map_err(engine)?;
        guard::read_only().verify_plan(&plan).map_err(|e| {
            let why = error::QueryError::from_engine(&e).message;
            QueryError::forbidden(format!(
                "the query would write ({why}): SQL here is read-only"
            ))
        })?;
        Ok((ctx, plan))
    }

    async fn execute(self: Arc<Self>, viewer: Viewer, query: Query) -> Result<Answer, QueryError> {
        let engine = |e: datafusion::error::DataFusionError| QueryError::from_engine(&e);
        let (ctx, plan) = self.plan(viewer, query.sql, query.setup).await?;
        let no_params = match &query.params {
            ParamValues::List(list) => list.is_empty(),
            ParamValues::Map(map) => map.is_empty(),
        };
        let plan = if no_params {
            plan
        } else {
            plan.with_param_values(query.params).map_err(engine)?
        };
        let cap = usize::try_from(self.limits.max_rows).unwrap_or(usize::MAX);
        // One row more than the cap, so the engine stops early and the cut is known. (A plan
        // about a plan, EXPLAIN's, must stay the root; its rows are few.)
        let about_a_plan = matches!(
            plan,
            LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) | LogicalPlan::DescribeTable(_)
        );
        let mut frame = ctx.execute_logical_plan(plan).await.map_err(engine)?;
        if !about_a_plan {
            frame = frame
                .limit(0, Some(cap.saturating_add(1)))
                .map_err(engine)?;
        }
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let mut stream = frame.execute_stream().await.map_err(engine)?;
        let pool = ctx.runtime_env().memory_pool.clone();
        let held = MemoryConsumer::new("sql answer").register(&pool);
        let (mut batches, mut rows, mut truncated) = (Vec::new(), 0usize, false);
        while let Some(batch) = stream.next().await {
            let mut batch = batch.map_err(engine)?;
            if rows + batch.num_rows() > cap {
                batch = batch.slice(0, cap - rows);
                truncated = true;
            }
            held.try_grow(batch.get_array_memory_size())
                .map_err(engine)?;
            rows += batch.num_rows();
            batches.push(batch);
            if truncated {
                break;
            }
        }
        Ok(Answer {
            schema,
            batches,
            rows: rows as u64,
            truncated,
            held: Held {
                slot: None,
                memory: Some(held),
            },
        })
    }

    /// A session with the tables `viewer` may see, the functions, and the query's limits.
    fn session(&self, viewer: Viewer) -> datafusion::error::Result<SessionContext> {
        let memory = usize::try_from(self.limits.max_memory_bytes).unwrap_or(usize::MAX);
        let runtime = RuntimeEnvBuilder::new()
            .with_cache_manager(self.caches.config())
            .with_memory_limit(memory, 1.0)
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()?;
        let mut config = SessionConfig::new().with_information_schema(true);
        config.options_mut().sql_parser.collect_spans = true;
        config.options_mut().execution.parquet.pushdown_filters = false;
        let mut ctx = SessionContext::new_with_config_rt(config, runtime);
        let url = url::Url::parse(STORE_URL)
            .map_err(|e| datafusion::error::DataFusionError::Internal(format!("store URL: {e}")))?;
        ctx.register_object_store(&url, self.objects.clone());
        datafusion_functions_json::register_all(&mut ctx)?;
        functions::register(&ctx, self.limits.max_memory_bytes);
        if let Some(catalog) = ctx.catalog("datafusion") {
            for schema in [QUARANTINE, LIVE] {
                catalog.register_schema(schema, Arc::new(MemorySchemaProvider::new()))?;
            }
        }
        let customer = match viewer {
            Viewer::Customer(id) => Some(id),
            Viewer::Admin | Viewer::Analyst => None,
        };
        let own = customer.map(|id| id.to_string());
        for (name, provider) in self
            .catalog
            .providers(own.as_deref(), &self.caches.statistics)?
        {
            ctx.register_table(name, provider)?;
        }
        let max_rows = usize::try_from(self.limits.max_rows).unwrap_or(usize::MAX - 1);
        ctx.register_table(
            TableReference::partial(LIVE, "images"),
            Arc::new(live::LiveImages {
                store: self.store.clone(),
                clock: self.clock.clone(),
                customer,
                max_rows,
            }),
        )?;
        ctx.register_table(
            TableReference::partial(LIVE, "customers"),
            Arc::new(live::LiveCustomers {
                store: self.store.clone(),
                customer,
                max_rows,
            }),
        )?;
        Ok(ctx)
    }
}

/// A query in flight: its slot, the running gauge, and the log line and counts at its end,
/// also when it is dropped unfinished (the client went away).
struct Running<'a> {
    engine: &'a QueryEngine,
    asker: &'a Asker,
    started: Instant,
    finished: bool,
    /// Until the answer takes it.
    slot: Option<Slot>,
}

impl<'a> Running<'a> {
    fn start(engine: &'a QueryEngine, asker: &'a Asker) -> Result<Self, QueryError> {
        let slot = engine.take_slot(&asker.key);
        if let Err(refused) = &slot {
            count(
                &engine.metrics,
                asker.door,
                refused.code.as_str(),
                Duration::ZERO,
            );
            tracing::info!(key_id = %asker.key, door = asker.door, outcome = refused.code.as_str(), "query refused");
        }
        Ok(Self {
            engine,
            asker,
            started: Instant::now(),
            finished: false,
            slot: Some(slot?),
        })
    }

    fn finish(&mut self, outcome: &Result<Answer, QueryError>) {
        self.finished = true;
        let elapsed = self.started.elapsed();
        let (code, rows, bytes) = match outcome {
            Ok(answer) => (
                if answer.truncated { "truncated" } else { "ok" },
                answer.rows,
                answer
                    .batches
                    .iter()
                    .map(RecordBatch::get_array_memory_size)
                    .sum::<usize>(),
            ),
            Err(e) => (e.code.as_str(), 0, 0),
        };
        self.engine.metrics.sql.rows.inc_by(rows);
        count(&self.engine.metrics, self.asker.door, code, elapsed);
        let error = outcome.as_ref().err().map(|e| e.message.as_str());
        tracing::info!(
            key_id = %self.asker.key,
            door = self.asker.door,
            seconds = elapsed.as_secs_f64(),
            rows,
            bytes,
            outcome = code,
            error,
            "query"
        );
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if !self.finished {
            let elapsed = self.started.elapsed();
            count(&self.engine.metrics, self.asker.door, "cancelled", elapsed);
            tracing::info!(
                key_id = %self.asker.key,
                door = self.asker.door,
                seconds = elapsed.as_secs_f64(),
                outcome = "cancelled",
                "query cancelled: its caller went away"
            );
        }
    }
}

fn count(metrics: &Metrics, door: &str, outcome: &str, elapsed: Duration) {
    metrics
        .sql
        .queries
        .get_or_create(&vec![
            ("door", door.to_owned()),
            ("outcome", outcome.to_owned()),
        ])
        .inc();
    metrics.sql.seconds.observe(elapsed.as_secs_f64());
}

/// The JSON parameters as `$1`, `$2`, ...: strings, numbers, booleans and null.
pub fn param_values(params: &[serde_json::Value]) -> Result<ParamValues, QueryError> {
    use serde_json::Value;
    let values = params
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::Null => Ok(ScalarValue::Null),
            Value::Bool(b) => Ok(ScalarValue::Boolean(Some(*b))),
            Value::String(s) => Ok(ScalarValue::Utf8(Some(s.clone()))),
            Value::Number(n) => Ok(match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => ScalarValue::Int64(Some(i)),
                (None, Some(f)) => ScalarValue::Float64(Some(f)),
                (None, None) => ScalarValue::Utf8(Some(n.to_string())),
            }),
            Value::Array(_) | Value::Object(_) => Err(QueryError::invalid(format!(
                "params[{i}] must be a string, a number, a boolean or null"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ParamValues::from(values))
}
