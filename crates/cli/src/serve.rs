//! `serve`, `api`, `worker` and `kafka-ingest`: one role of the system, or all of them, until
//! Ctrl-C or SIGTERM.

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
    let state = AppState::from_settings(settings).await?;
    let kafka = stream::tasks(&state, plan)?;
    let running = imagelake_server::serve::start_role(state, listen, role, kafka).await?;
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

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,tower_http=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
