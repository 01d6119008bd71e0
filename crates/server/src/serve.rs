//! Runs the parts of a role (`serve` for all of them, or `api`, `worker` and `kafka-ingest` apart,
//! so they scale apart): HTTP, and every background task on one [`Supervisor`]; and stops them
//! in order.

use std::net::SocketAddr;

use anyhow::Context as _;
use imagelake_runtime::{
    AppState,
    heartbeat::{self, Heartbeats},
    tasks::{OnFailure, Stage, Supervisor, Task, TaskSpec},
    worker::Workers,
};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::{
    api,
    connections::{self, Timeouts},
};

/// A started system; [`Running::shutdown`] stops it in order.
pub struct Running {
    pub addr: SocketAddr,
    /// The PostgreSQL wire's address, when it is on (`sql.pg_listen`).
    pub pg_addr: Option<SocketAddr>,
    pub state: AppState,
    http_stop: CancellationToken,
    http: JoinHandle<()>,
    pg: Option<JoinHandle<()>>,
    supervisor: Supervisor,
}

impl Running {
    /// Resolves when a task whose failure stops the process failed (the stream consumer), with
    /// its error; pending forever otherwise.
    pub async fn failure(&self) -> anyhow::Error {
        self.supervisor.failure().await
    }

    /// Stops in order: HTTP stops taking requests and finishes the ones in flight; then the
    /// tasks stop stage by stage: intake (the stream consumer commits what it stored), work (the
    /// workers finish the images they hold; queued work stays durable for the next start), and
    /// flush (the event publisher gives up its lease).
    pub async fn shutdown(self) -> anyhow::Result<()> {
        if let Some(pg) = &self.pg {
            pg.abort();
        }
        self.http_stop.cancel();
        self.http.await?;
        tracing::info!("http stopped; stopping the tasks");
        self.supervisor.shutdown().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Which parts a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything in one process: the embedded default.
    All,
    /// The HTTP API only; work reaches the workers through the queue.
    Api,
    /// Processing, with health, readiness and metrics on HTTP.
    Worker,
    /// Only health, readiness and metrics on HTTP: the scheduler runs beside it.
    Scheduler,
    /// Only health, readiness and metrics on HTTP: the image stream consumer runs beside it.
    Ingest,
    /// Only health, readiness and metrics on HTTP: the lake writer runs beside it.
    LakeWriter,
}

impl Role {
    /// The role's name, as its command says it (`serve` for all of them).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "serve",
            Self::Api => "api",
            Self::Worker => "worker",
            Self::Scheduler => "scheduler",
            Self::Ingest => "kafka-ingest",
            Self::LakeWriter => "lake-writer",
        }
    }
}

/// A background task and how to run it.
pub type Spawn = (TaskSpec, Box<dyn Task>);

/// The tasks of `role` that this crate knows: the workers (required: a worker that cannot
/// reach its queue is not ready).
pub fn role_tasks(state: &AppState, role: Role) -> Vec<Spawn> {
    let mut tasks: Vec<Spawn> = Vec::new();
    let runs_work = matches!(role, Role::All | Role::Worker);
    if runs_work && state.settings.queue.pull {
        let spec = TaskSpec {
            name: "workers",
            required: true,
            on_failure: OnFailure::Retry,
            stage: Stage::Work,
        };
        tasks.push((spec, Box::new(Workers::new(state.clone()))));
    }
    tasks
}

/// Binds `listen` (port 0 picks a free one) and starts every role of the embedded system.
pub async fn start(state: AppState, listen: SocketAddr) -> anyhow::Result<Running> {
    let scheduler = imagelake_runtime::jobs::scheduler_task(&state, Vec::new())?;
    start_role(state, listen, Role::All, scheduler.into_iter().collect()).await
}

/// Binds `listen` and starts the parts of `role`, with `extra` tasks (the Kafka ones) on the
/// same supervisor.
pub async fn start_role(
    state: AppState,
    listen: SocketAddr,
    role: Role,
    extra: Vec<Spawn>,
) -> anyhow::Result<Running> {
    if role == Role::All {
        // A lone process owns the queue: no lease can belong to a live worker elsewhere, so work
        // held by a process that died (kill -9) is handed out again at once, not after its lease.
        let released = state.queue.release_leases().await?;
        if released > 0 {
            tracing::info!(
                jobs = released,
                "re-queued work left in progress by the previous run"
            );
        }
    }
    if matches!(role, Role::All | Role::Api) {
        state.known_keys.learn(state.store.as_ref()).await;
    }
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("the HTTP server could not listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let sql = api::SqlDoor::default();
    let (pg_addr, pg) = match role {
        Role::All | Role::Api => pg_door(&state, &sql).await?,
        _ => (None, None),
    };
    let mut supervisor = Supervisor::new(state.tasks.clone());
    for (spec, task) in role_tasks(&state, role).into_iter().chain(extra) {
        supervisor.spawn(spec, task);
    }
    // Every process beats, and its first beat already lists every other task.
    let beats = Heartbeats::new(state.clone(), role.as_str());
    supervisor.spawn(heartbeat::SPEC, Box::new(beats));
    let router = match role {
        Role::Worker | Role::Ingest | Role::LakeWriter | Role::Scheduler => {
            api::ops_router(state.clone())
        }
        Role::All | Role::Api => api::router(state.clone(), &sql),
    };
    let limits = &state.settings.limits;
    let timeouts = Timeouts {
        header_read: limits.header_read_timeout.0,
        body_idle: limits.body_idle_timeout.0,
        body_total: limits.body_timeout.0,
    };
    let http_stop = CancellationToken::new();
    let http = tokio::spawn(connections::serve(
        listener,
        router,
        timeouts,
        http_stop.clone(),
    ));
    tracing::info!(%addr, ?role, "imagelake is listening");
    Ok(Running {
        addr,
        pg_addr,
        state,
        http_stop,
        http,
        pg,
        supervisor,
    })
}

/// The PostgreSQL wire on `sql.pg_listen`, on the HTTP door's query engine; a failure to bind
/// or to load TLS stops the start.
#[cfg(feature = "sql")]
async fn pg_door(
    state: &AppState,
    sql: &api::SqlDoor,
) -> anyhow::Result<(Option<SocketAddr>, Option<JoinHandle<()>>)> {
    let Some(door) = imagelake_pg::PgDoor::bind(state, sql.shared()).await? else {
        return Ok((None, None));
    };
    let addr = door.local_addr()?;
    Ok((Some(addr), Some(tokio::spawn(door.serve()))))
}

#[cfg(not(feature = "sql"))]
async fn pg_door(
    state: &AppState,
    _: &api::SqlDoor,
) -> anyhow::Result<(Option<SocketAddr>, Option<JoinHandle<()>>)> {
    anyhow::ensure!(
        state.settings.sql.pg_listen.is_none(),
        "sql.pg_listen: this build has no SQL (the `lake` feature)"
    );
    Ok((None, None))
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
