//! Runs the API, the workers and the sweeper, all in one process (`serve`) or as separate roles
//! (`api`, `worker`) that scale apart, and stops them in order.

use std::net::SocketAddr;

use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use imagelake_runtime::{AppState, sweeper, worker};

use crate::{
    api,
    connections::{self, Timeouts},
};

/// A started system; [`Running::shutdown`] stops it in order.
pub struct Running {
    pub addr: SocketAddr,
    pub state: AppState,
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Stops taking requests and finishes the ones in flight, then lets the workers finish the
    /// images they hold (queued work stays durable for the next start), then stops the sweeper.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.task.await?
    }
}

/// Which parts a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything in one process: the embedded default.
    All,
    /// The HTTP API only; work reaches the workers through the queue.
    Api,
    /// Processing and the retention sweeper, with health, readiness and metrics on HTTP.
    Worker,
    /// Only health, readiness and metrics on HTTP: the image stream consumer runs beside it.
    Ingest,
}

/// Binds `listen` (port 0 picks a free one) and starts every role of the embedded system.
pub async fn start(state: AppState, listen: SocketAddr) -> anyhow::Result<Running> {
    start_role(state, listen, Role::All).await
}

/// Binds `listen` and starts the parts of `role`.
pub async fn start_role(
    state: AppState,
    listen: SocketAddr,
    role: Role,
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
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let workers_stop = CancellationToken::new();
    let processing = matches!(role, Role::All | Role::Worker) && state.settings.queue.pull;
    let sweeping = matches!(role, Role::All | Role::Worker);
    let workers =
        processing.then(|| tokio::spawn(worker::run(state.clone(), workers_stop.clone())));
    let sweeper = sweeping.then(|| tokio::spawn(sweeper::run(state.clone(), workers_stop.clone())));
    let router = match role {
        Role::Worker | Role::Ingest => api::ops_router(state.clone()),
        Role::All | Role::Api => api::router(state.clone()),
    };
    let limits = &state.settings.limits;
    let timeouts = Timeouts {
        header_read: limits.header_read_timeout.0,
        body_idle: limits.body_idle_timeout.0,
        body_total: limits.body_timeout.0,
    };
    let http = connections::serve(listener, router, timeouts, stop.clone());
    let task = tokio::spawn(async move {
        http.await;
        tracing::info!("http stopped; finishing in-flight processing");
        workers_stop.cancel();
        for task in [workers, sweeper].into_iter().flatten() {
            task.await?;
        }
        tracing::info!("stopped");
        Ok(())
    });
    tracing::info!(%addr, ?role, "imagelake is listening");
    Ok(Running {
        addr,
        state,
        stop,
        task,
    })
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
