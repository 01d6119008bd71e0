//! Starting and stopping the Kafka image stream consumer beside a role: in `serve` when
//! `kafka.brokers` is set, and always in `kafka-ingest`.

use imagelake_server::{AppState, serve::Role};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The running consumer, if any.
pub struct Stream {
    stop: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Stream {
    /// Stops taking messages and commits the offsets of what was stored.
    pub async fn stop(self) {
        self.stop.cancel();
        if let Some(task) = self.task {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "image stream consumer failed"),
                Err(e) => tracing::error!(error = %e, "image stream consumer panicked"),
            }
        }
    }
}

pub fn start(state: &AppState, role: Role) -> anyhow::Result<Stream> {
    let stop = CancellationToken::new();
    let wanted = match role {
        Role::Ingest => true,
        Role::All => state.settings.kafka.brokers.is_some(),
        Role::Api | Role::Worker => false,
    };
    if !wanted {
        return Ok(Stream { stop, task: None });
    }
    if state.settings.kafka.brokers.is_none() {
        anyhow::bail!("kafka-ingest needs kafka.brokers (or IMAGELAKE_KAFKA_BROKERS)");
    }
    Ok(Stream {
        task: Some(spawn(state.clone(), stop.clone(), role == Role::Ingest)?),
        stop,
    })
}

/// The consumer as a task; with `required`, the process is unready while Kafka is out of reach.
#[cfg(feature = "kafka")]
fn spawn(
    state: AppState,
    stop: CancellationToken,
    required: bool,
) -> anyhow::Result<JoinHandle<anyhow::Result<()>>> {
    Ok(tokio::spawn(imagelake_kafka::run(state, stop, required)))
}

#[cfg(not(feature = "kafka"))]
fn spawn(
    _: AppState,
    _: CancellationToken,
    _: bool,
) -> anyhow::Result<JoinHandle<anyhow::Result<()>>> {
    anyhow::bail!("kafka.brokers needs a build with the `kafka` feature")
}
