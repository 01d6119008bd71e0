//! The Kafka side of a role, as tasks for the role's supervisor: the image stream consumer (in
//! `serve` when `kafka.brokers` is set, and always in `kafka-ingest`) and the event publisher
//! (in `serve` and `worker` when `kafka.brokers` is set).

use imagelake_runtime::{
    AppState,
    settings::Settings,
    tasks::{OnFailure, Stage, TaskSpec},
};
use imagelake_server::serve::{Role, Spawn};

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
        brokers || role != Role::LakeWriter,
        "lake-writer needs kafka.brokers (or IMAGELAKE_KAFKA_BROKERS): without brokers the lake \
         is written by `serve` from its local log, which no other process can share"
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

/// The Kafka tasks of `plan`. A consumer that fails stops the process (a consumer that no longer
/// consumes must not sit behind a healthy port); with `required` (a `kafka-ingest`) the process
/// is not ready while it fails. The publisher is never required, and a failed round is tried
/// again.
pub fn tasks(state: &AppState, plan: Plan) -> anyhow::Result<Vec<Spawn>> {
    let mut tasks = Vec::new();
    if plan.consume {
        let spec = TaskSpec {
            name: "stream-consumer",
            required: plan.required,
            on_failure: OnFailure::StopProcess,
            stage: Stage::Intake,
        };
        tasks.push((spec, consumer(state, plan.required)?));
    }
    if plan.publish {
        let spec = TaskSpec {
            name: "event-publisher",
            required: false,
            on_failure: OnFailure::Retry,
            stage: Stage::Flush,
        };
        tasks.push((spec, publisher(state)?));
    }
    Ok(tasks)
}

/// The console's view of the stream, in the roles that serve the API, where brokers are set.
pub fn console(state: &mut AppState, role: Role) -> anyhow::Result<()> {
    if state.settings.kafka.brokers.is_none() || !matches!(role, Role::All | Role::Api) {
        return Ok(());
    }
    #[cfg(feature = "kafka")]
    {
        state.stream = Some(std::sync::Arc::new(
            imagelake_kafka::StreamConsole::connect(state)?,
        ));
    }
    Ok(())
}

#[cfg(feature = "kafka")]
fn consumer(
    state: &AppState,
    required: bool,
) -> anyhow::Result<Box<dyn imagelake_runtime::tasks::Task>> {
    Ok(Box::new(imagelake_kafka::ImageStream::connect(
        state.clone(),
        required,
    )?))
}

#[cfg(feature = "kafka")]
fn publisher(state: &AppState) -> anyhow::Result<Box<dyn imagelake_runtime::tasks::Task>> {
    Ok(Box::new(imagelake_kafka::Publisher::connect(
        state.clone(),
    )?))
}

// Never called: `plan` refuses brokers in a build without the feature.
#[cfg(not(feature = "kafka"))]
fn consumer(_: &AppState, _: bool) -> anyhow::Result<Box<dyn imagelake_runtime::tasks::Task>> {
    unreachable!("plan refuses kafka.brokers without the kafka feature")
}

#[cfg(not(feature = "kafka"))]
fn publisher(_: &AppState) -> anyhow::Result<Box<dyn imagelake_runtime::tasks::Task>> {
    unreachable!("plan refuses kafka.brokers without the kafka feature")
}
