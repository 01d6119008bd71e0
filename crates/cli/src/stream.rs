//! Starting and stopping the Kafka side of a role: the image stream consumer (in `serve` when
//! `kafka.brokers` is set, and always in `kafka-ingest`) and the event publisher (in `serve` and
//! `worker` when `kafka.brokers` is set).

use imagelake_runtime::{AppState, settings::Settings};
use imagelake_server::serve::Role;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

type Task = JoinHandle<anyhow::Result<()>>;

/// The running Kafka tasks, if any.
pub struct Stream {
    stop: CancellationToken,
    tasks: Vec<(&'static str, Task)>,
}

impl Stream {
    /// Waits until a task ends without being asked to, and says why; pending forever when none
    /// runs. The process then stops with that error, so a supervisor restarts it rather than
    /// leaving a consumer that no longer consumes behind a healthy port.
    pub async fn failure(&mut self) -> anyhow::Error {
        if self.tasks.is_empty() {
            return std::future::pending().await;
        }
        let (ended, index, _) =
            futures::future::select_all(self.tasks.iter_mut().map(|(_, task)| task)).await;
        let (name, _) = self.tasks.remove(index);
        match ended {
            Ok(Ok(())) => anyhow::anyhow!("the {name} stopped on its own"),
            Ok(Err(e)) => e.context(format!("the {name} failed")),
            Err(e) => anyhow::anyhow!("the {name} panicked: {e}"),
        }
    }

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

/// Which Kafka tasks a role runs, decided before anything starts.
#[derive(Clone, Copy)]
pub struct Plan {
    consume: bool,
    /// The process is unready while Kafka is out of reach (a `kafka-ingest`).
    required: bool,
    publish: bool,
}

/// Refuses, before anything starts, a role that needs Kafka without brokers or without the
/// `kafka` feature.
pub fn plan(settings: &Settings, role: Role) -> anyhow::Result<Plan> {
    let brokers = settings.kafka.brokers.is_some();
    anyhow::ensure!(
        brokers || role != Role::Ingest,
        "kafka-ingest needs kafka.brokers (or IMAGELAKE_KAFKA_BROKERS)"
    );
    anyhow::ensure!(
        !brokers || cfg!(feature = "kafka"),
        "kafka.brokers needs a build with the `kafka` feature"
    );
    #[cfg(feature = "kafka")]
    if brokers {
        imagelake_kafka::check_config(&settings.kafka, settings.limits.max_body_bytes)?;
    }
    Ok(Plan {
        consume: brokers && matches!(role, Role::Ingest | Role::All),
        required: role == Role::Ingest,
        publish: brokers && matches!(role, Role::All | Role::Worker),
    })
}

pub fn start(state: &AppState, plan: Plan) -> Stream {
    let stop = CancellationToken::new();
    let mut tasks = Vec::new();
    if plan.consume {
        tasks.push((
            "image stream consumer",
            consumer(state, &stop, plan.required),
        ));
    }
    if plan.publish {
        tasks.push(("event publisher", publisher(state, &stop)));
    }
    Stream { stop, tasks }
}

/// The consumer as a task; with `required`, the process is unready while Kafka is out of reach.
#[cfg(feature = "kafka")]
fn consumer(state: &AppState, stop: &CancellationToken, required: bool) -> Task {
    tokio::spawn(imagelake_kafka::run(state.clone(), stop.clone(), required))
}

#[cfg(feature = "kafka")]
fn publisher(state: &AppState, stop: &CancellationToken) -> Task {
    tokio::spawn(imagelake_kafka::publish_events(state.clone(), stop.clone()))
}

// Never called: `plan` refuses brokers in a build without the feature.
#[cfg(not(feature = "kafka"))]
fn consumer(_: &AppState, _: &CancellationToken, _: bool) -> Task {
    unreachable!("plan refuses kafka.brokers without the kafka feature")
}

#[cfg(not(feature = "kafka"))]
fn publisher(_: &AppState, _: &CancellationToken) -> Task {
    unreachable!("plan refuses kafka.brokers without the kafka feature")
}
