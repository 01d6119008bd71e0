//! Starting and stopping the Kafka side of a role: the image stream consumer (in `serve` when
//! `kafka.brokers` is set, and always in `kafka-ingest`) and the event publisher (in `serve` and
//! `worker` when `kafka.brokers` is set).

use imagelake_server::{AppState, serve::Role};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

type Task = JoinHandle<anyhow::Result<()>>;

/// The running Kafka tasks, if any.
pub struct Stream {
    stop: CancellationToken,
    tasks: Vec<(&'static str, Task)>,
}

impl Stream {
    /// Stops taking messages, commits the offsets of what was stored, and flushes the events
    /// already handed to the producer.
    pub async fn stop(self) {
        self.stop.cancel();
        for (name, task) in self.tasks {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "{name} failed"),
                Err(e) => tracing::error!(error = %e, "{name} panicked"),
            }
        }
    }
}

pub fn start(state: &AppState, role: Role) -> anyhow::Result<Stream> {
    let stop = CancellationToken::new();
    let brokers = state.settings.kafka.brokers.is_some();
    let consume = match role {
        Role::Ingest => true,
        Role::All => brokers,
        Role::Api | Role::Worker => false,
    };
    let publish = brokers && matches!(role, Role::All | Role::Worker);
    if consume && !brokers {
        anyhow::bail!("kafka-ingest needs kafka.brokers (or IMAGELAKE_KAFKA_BROKERS)");
    }
    let mut tasks = Vec::new();
    if consume {
        let required = role == Role::Ingest;
        tasks.push(("image stream consumer", consumer(state, &stop, required)?));
    }
    if publish {
        tasks.push(("event publisher", publisher(state, &stop)?));
    }
    Ok(Stream { stop, tasks })
}

/// The consumer as a task; with `required`, the process is unready while Kafka is out of reach.
#[cfg(feature = "kafka")]
fn consumer(state: &AppState, stop: &CancellationToken, required: bool) -> anyhow::Result<Task> {
    Ok(tokio::spawn(imagelake_kafka::run(
        state.clone(),
        stop.clone(),
        required,
    )))
}

#[cfg(feature = "kafka")]
fn publisher(state: &AppState, stop: &CancellationToken) -> anyhow::Result<Task> {
    Ok(tokio::spawn(imagelake_kafka::publish_events(
        state.clone(),
        stop.clone(),
    )))
}

#[cfg(not(feature = "kafka"))]
fn consumer(_: &AppState, _: &CancellationToken, _: bool) -> anyhow::Result<Task> {
    anyhow::bail!("kafka.brokers needs a build with the `kafka` feature")
}

#[cfg(not(feature = "kafka"))]
fn publisher(_: &AppState, _: &CancellationToken) -> anyhow::Result<Task> {
    anyhow::bail!("kafka.brokers needs a build with the `kafka` feature")
}
