//! `events`: the embedded deployment's event log, as JSON lines.

use clap::Args;
use imagelake_metadata::SqliteStore;
use imagelake_runtime::settings::MetadataBackend;

use crate::settings::ServeArgs;

#[derive(Args)]
pub struct EventsArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// Only events after this position (the `seq` of the last line read).
    #[arg(long, default_value_t = 0)]
    after: u64,
    /// At most this many events.
    #[arg(long, default_value_t = 1000)]
    limit: usize,
}

/// Prints the embedded deployment's event log as JSON lines: `{"seq", "published_at", "event"}`.
pub async fn events(args: EventsArgs) -> anyhow::Result<()> {
    let settings = args.serve.settings()?;
    anyhow::ensure!(
        settings.metadata.backend == MetadataBackend::Sqlite,
        "the local event log belongs to the SQLite store; with Firestore, read the events topic"
    );
    let path = settings.sqlite_path();
    anyhow::ensure!(path.exists(), "no database at {}", path.display());
    let store = SqliteStore::open(&path)?;
    for logged in store.event_log(args.after, args.limit).await? {
        let line = serde_json::json!({
            "seq": logged.seq,
            "published_at": logged.published_at,
            "event": logged.event,
        });
        println!("{line}");
    }
    Ok(())
}
