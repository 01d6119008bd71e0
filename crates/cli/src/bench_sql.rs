//! `imagelake bench lake query DIR --queries FILE`: the dashboard queries of FILE (blocks headed
//! `-- name: NAME`) run through the query layer, as an analyst, over DIR's lake, ROUNDS times
//! each in one process: the first run is cold (nothing of the files in the process yet), the
//! median of the others warm. One line per query: `NAME cold_s warm_s rows`.

use std::{path::PathBuf, time::Instant};

use anyhow::Context;
use clap::Args;
use imagelake_sql::{Asker, QueryEngine, Viewer};

#[derive(Args)]
pub struct QueryArgs {
    dir: PathBuf,
    /// The queries, each after a `-- name: NAME` line.
    #[arg(long)]
    queries: PathBuf,
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

/// `(name, sql)` of each block of the file.
pub fn blocks(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.trim().strip_prefix("-- name:") {
            out.push((name.trim().to_owned(), String::new()));
        } else if let Some((_, sql)) = out.last_mut() {
            sql.push_str(line);
            sql.push('\n');
        }
    }
    out
}

pub async fn run(args: QueryArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.queries)
        .with_context(|| format!("reading {}", args.queries.display()))?;
    let mut settings = imagelake_runtime::Settings {
        data_dir: args.dir.clone(),
        ..Default::default()
    };
    // Room for the benchmark's day, whatever the defaults for serving.
    settings.sql.max_memory_bytes = 4 << 30;
    settings.sql.timeout =
        imagelake_core::duration::HumanDuration(std::time::Duration::from_secs(600));
    settings.admin_token = Some(imagelake_runtime::settings::Secret(
        imagelake_runtime::keys::generate_key().0,
    ));
    let state = imagelake_runtime::AppState::from_settings(settings).await?;
    let engine = QueryEngine::new(&state).await?;
    let asker = Asker {
        viewer: Viewer::Analyst,
        key: "bench".into(),
        door: "bench",
    };
    for (name, sql) in blocks(&text) {
        let mut seconds = Vec::new();
        let mut rows = 0;
        for _ in 0..args.rounds.max(2) {
            let started = Instant::now();
            let answer = engine
                .run(&asker, &sql, &[])
                .await
                .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            seconds.push(started.elapsed().as_secs_f64());
            rows = answer.rows;
        }
        let cold = seconds[0];
        let mut warm = seconds[1..].to_vec();
        warm.sort_by(f64::total_cmp);
        println!("{name} {cold:.4} {:.4} {rows}", warm[warm.len() / 2]);
    }
    Ok(())
}
