//! `serve`, `api`, `worker`, `kafka-ingest`, `lake-writer` and `scheduler`: one role of the
//! system, or all of them, until Ctrl-C or SIGTERM.

use anyhow::Context;
use imagelake_runtime::AppState;
use imagelake_server::serve::Role;

use crate::{
    settings::{LogFormat, ServeArgs},
    stream,
};

/// Runs `role` until Ctrl-C or SIGTERM.
pub async fn serve(args: ServeArgs, role: Role) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let settings = args.settings()?;
    let plan = stream::plan(&settings, role)?;
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating {}", settings.data_dir.display()))?;
    tracing::info!(
        ?role,
        data_dir = %settings.data_dir.display(),
        retention = %settings.retention,
        workers = settings.processing.worker_count(),
        objects = ?settings.objects.backend,
        metadata = ?settings.metadata.backend,
        queue = ?settings.queue.backend,
        "starting imagelake"
    );
    let listen = settings.listen;
    let mut state = AppState::from_settings(settings).await?;
    stream::console(&mut state, role)?;
    let mut tasks = stream::tasks(&state, plan)?;
    tasks.extend(lake(&mut state, role).await?);
    if matches!(role, Role::All | Role::Scheduler) {
        let lake_jobs = crate::jobs::lake_jobs(&state);
        tasks.extend(imagelake_runtime::jobs::scheduler_task(&state, lake_jobs)?);
    }
    let running = imagelake_server::serve::start_role(state, listen, role, tasks).await?;
    let failed = tokio::select! {
        () = imagelake_server::serve::shutdown_signal() => None,
        e = running.failure() => Some(e),
    };
    match &failed {
        None => tracing::info!("shutdown requested"),
        Some(e) => tracing::error!(error = format!("{e:#}"), "stopping"),
    }
    running.shutdown().await?;
    failed.map_or(Ok(()), Err)
}

/// The lake of a role. Without brokers, `serve` alone has it: its log takes the HTTP door's
/// records and the writer task copies the embedded event log and writes the hours. With
/// brokers, `serve` and `api` send the door's records and the request records to Kafka, and
/// `serve` and `lake-writer` run the writer of the lake's consumer group.
#[cfg(feature = "lake")]
async fn lake(
    state: &mut AppState,
    role: Role,
) -> anyhow::Result<Vec<imagelake_server::serve::Spawn>> {
    if state.settings.kafka.brokers.is_some() {
        return lake_on_brokers(state, role).await;
    }
    if role != Role::All {
        return Ok(Vec::new());
    }
    use imagelake_runtime::{
        settings::MetadataBackend,
        tasks::{OnFailure, Stage, TaskSpec},
    };
    let lake = imagelake_lake::Lake::open(state).await?;
    state.lake = Some(lake.clone());
    let events = match state.settings.metadata.backend {
        MetadataBackend::Sqlite => Some(imagelake_metadata::SqliteStore::open(
            &state.settings.sqlite_path(),
        )?),
        MetadataBackend::Firestore => None,
    };
    let spec = TaskSpec {
        name: "lake-writer",
        required: false,
        on_failure: OnFailure::Retry,
        stage: Stage::Flush,
    };
    let writer = imagelake_lake::Writer::new(lake, events).await?;
    Ok(vec![(spec, Box::new(writer))])
}

#[cfg(all(feature = "lake", feature = "kafka"))]
async fn lake_on_brokers(
    state: &mut AppState,
    role: Role,
) -> anyhow::Result<Vec<imagelake_server::serve::Spawn>> {
    use imagelake_runtime::tasks::{OnFailure, Stage, TaskSpec};
    if matches!(role, Role::All | Role::Api) {
        state.lake = Some(std::sync::Arc::new(
            imagelake_lake::KafkaDoor::connect(state).await?,
        ));
    }
    if !matches!(role, Role::All | Role::LakeWriter) {
        return Ok(Vec::new());
    }
    let spec = TaskSpec {
        name: "lake-writer",
        required: role == Role::LakeWriter,
        on_failure: OnFailure::Retry,
        stage: Stage::Intake,
    };
    let writer = imagelake_lake::StreamWriter::connect(state, role == Role::LakeWriter).await?;
    Ok(vec![(spec, Box::new(writer))])
}

// `stream::plan` refuses brokers in a build without the `kafka` feature.
#[cfg(all(feature = "lake", not(feature = "kafka")))]
async fn lake_on_brokers(
    _: &mut AppState,
    _: Role,
) -> anyhow::Result<Vec<imagelake_server::serve::Spawn>> {
    Ok(Vec::new())
}

#[cfg(not(feature = "lake"))]
async fn lake(_: &mut AppState, _: Role) -> anyhow::Result<Vec<imagelake_server::serve::Spawn>> {
    Ok(Vec::new())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,tower_http=warn".into());
    // Colours only for a terminal: a log file or a pipe gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
