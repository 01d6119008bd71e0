//! Runs the API, the workers and the sweeper in one process, and stops them in order.

use std::net::SocketAddr;

use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::{api, state::AppState, sweeper, worker};

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

/// Binds `listen` (port 0 picks a free one) and starts every role of the embedded system.
pub async fn start(state: AppState, listen: SocketAddr) -> anyhow::Result<Running> {
    // One process owns the embedded queue: no lease can belong to a live worker elsewhere, so work
    // held by a process that died (kill -9) is handed out again at once rather than after its lease.
    let released = state.queue.release_leases().await?;
    if released > 0 {
        tracing::info!(
            jobs = released,
            "re-queued work left in progress by the previous run"
        );
    }
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let workers_stop = CancellationToken::new();
    let workers = tokio::spawn(worker::run(state.clone(), workers_stop.clone()));
    let sweeper = tokio::spawn(sweeper::run(state.clone(), workers_stop.clone()));
    let http = axum::serve(listener, api::router(state.clone()))
        .with_graceful_shutdown(stop.clone().cancelled_owned());
    let task = tokio::spawn(async move {
        let served = http.await;
        tracing::info!("http stopped; finishing in-flight processing");
        workers_stop.cancel();
        workers.await?;
        sweeper.await?;
        tracing::info!("stopped");
        Ok(served?)
    });
    tracing::info!(%addr, "imagelake is listening");
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
