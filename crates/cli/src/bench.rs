//! `imagelake bench`: the numbers behind BENCHMARKS.md.
//!
//! - `processing` runs the whole processing step (decode, EXIF, both renditions, hash, colour) on
//!   every image of a folder on the calling thread (pin it with `taskset -c 0` for one core),
//!   several rounds, and reports the median round.
//! - `upload` starts the embedded system in-process on a temporary data dir (or uses a running
//!   deployment with `--server`), uploads the folder with N concurrent clients over real HTTP,
//!   waits until every image is processed, and reports throughput and upload-to-processed
//!   latency percentiles.

use std::{path::PathBuf, sync::Arc, time::Instant};

use clap::{Args, Subcommand};
use futures::StreamExt;
use imagelake_imaging::{Options, inspect};

use crate::client::collect_files;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Process every image of a folder on one thread.
    Processing(ProcessingArgs),
    /// Upload a folder to an in-process server and wait for processing.
    Upload(UploadArgs),
    /// Kafka ingest throughput beside a bare rdkafka consumer writing the same bytes.
    #[cfg(feature = "kafka")]
    Kafka(crate::bench_kafka::KafkaBenchArgs),
    /// The lake writer's flush of one hour of events (prepare, then flush).
    #[cfg(feature = "lake")]
    #[command(subcommand)]
    Lake(crate::bench_lake::LakeBench),
}

#[derive(Args)]
pub struct ProcessingArgs {
    /// Folder of images.
    corpus: PathBuf,
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

#[derive(Args)]
pub struct UploadArgs {
    /// Folder of images.
    corpus: PathBuf,
    /// Concurrent uploading clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// A running deployment to measure (e.g. `imagelake api` + `imagelake worker` processes)
    /// instead of an in-process embedded system.
    #[arg(long)]
    server: Option<String>,
    /// The deployment's admin token, to create the benchmark's customer.
    #[arg(long, env = "IMAGELAKE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Processing(args) => processing(args),
        BenchCommand::Upload(args) => upload(args).await,
        #[cfg(feature = "kafka")]
        BenchCommand::Kafka(args) => crate::bench_kafka::run(args).await,
        #[cfg(feature = "lake")]
        BenchCommand::Lake(cmd) => crate::bench_lake::run(cmd).await,
    }
}

/// The supported images of a folder, each with its size in megapixels.
fn load(corpus: &PathBuf) -> anyhow::Result<Vec<(PathBuf, Vec<u8>, f64)>> {
    let mut images = Vec::new();
    for file in collect_files(std::slice::from_ref(corpus))? {
        let bytes = std::fs::read(&file)?;
        if let Ok(i) = inspect(&bytes, &Options::unlimited()) {
            let megapixels = f64::from(i.width) * f64::from(i.height) / 1e6;
            images.push((file, bytes, megapixels));
        }
    }
    anyhow::ensure!(
        !images.is_empty(),
        "no supported images under {}",
        corpus.display()
    );
    Ok(images)
}

fn processing(args: ProcessingArgs) -> anyhow::Result<()> {
    let images = load(&args.corpus)?;
    let megapixels: f64 = images.iter().map(|(_, _, mp)| mp).sum();
    let options = Options::default();
    let mut rounds = Vec::new();
    for _ in 0..args.rounds.max(1) {
        let started = Instant::now();
        for (path, bytes, _) in &images {
            if let Err(e) = imagelake_imaging::process(bytes, &options) {
                eprintln!("{}: {e}", path.display());
            }
        }
        rounds.push(started.elapsed().as_secs_f64());
    }
    rounds.sort_by(f64::total_cmp);
    let median = rounds[rounds.len() / 2];
    println!(
        "processing: {} images, {:.0} MP; median round {:.3} s; {:.2} images/s; {:.1} MP/s",
        images.len(),
        megapixels,
        median,
        images.len() as f64 / median,
        megapixels / median
    );
    Ok(())
}

async fn upload(args: UploadArgs) -> anyhow::Result<()> {
    use imagelake_runtime::{AppState, Settings, settings::Secret};

    let images = load(&args.corpus)?;
    let mut embedded = None;
    let (base, admin) = match (&args.server, &args.admin_token) {
        (Some(server), Some(token)) => (server.trim_end_matches('/').to_owned(), token.clone()),
        (Some(_), None) => anyhow::bail!("--server needs --admin-token or IMAGELAKE_ADMIN_TOKEN"),
        (None, _) => {
            let dir = tempfile_dir()?;
            let settings = Settings {
                data_dir: dir.clone(),
                admin_token: Some(Secret("bench-admin".to_owned())),
                limits: imagelake_runtime::settings::Limits {
                    requests_per_second: 1e6,
                    burst: 1_000_000,
                    ..Default::default()
                },
                ..Settings::default()
            };
            let state = AppState::embedded(settings)?;
            let running = imagelake_server::start(state, "127.0.0.1:0".parse()?).await?;
            let base = format!("http://{}", running.addr);
            embedded = Some((running, dir));
            (base, "bench-admin".to_owned())
        }
    };
    let client = reqwest::Client::new();
    let created: serde_json::Value = client
        .post(format!("{base}/v1/customers"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"name": "bench", "email": "bench@example.test"}))
        .send()
        .await?
        .json()
        .await?;
    let key = Arc::new(
        created["api_key"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("could not create a customer: {created}"))?
            .to_owned(),
    );
    let started = Instant::now();
    let ids: Vec<String> = futures::stream::iter(images.iter())
        .map(|(_, bytes, _)| {
            let (client, key, url) = (client.clone(), key.clone(), format!("{base}/v1/images"));
            async move {
                let r: serde_json::Value = client
                    .post(url)
                    .bearer_auth(&*key)
                    .body(bytes.clone())
                    .send()
                    .await?
                    .json()
                    .await?;
                anyhow::Ok(r["id"].as_str().unwrap_or_default().to_owned())
            }
        })
        .buffer_unordered(args.clients.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let uploaded = started.elapsed().as_secs_f64();
    let mut latencies = Vec::new();
    for id in &ids {
        latencies.push(processed_after(&client, &base, &key, id).await?);
    }
    let total = started.elapsed().as_secs_f64();
    if let Some((running, dir)) = embedded {
        running.shutdown().await?;
        let _ = std::fs::remove_dir_all(&dir);
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    println!(
        "upload: {} images with {} clients; uploads done in {:.2} s, all processed in {:.2} s; {:.2} images/s end to end; upload->processed p50 {:.3} s, p99 {:.3} s",
        ids.len(),
        args.clients,
        uploaded,
        total,
        ids.len() as f64 / total,
        pct(0.5),
        pct(0.99)
    );
    Ok(())
}

/// Waits until the image is processed; its `processed_at - uploaded_at` in seconds.
async fn processed_after(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    id: &str,
) -> anyhow::Result<f64> {
    let time = |v: &serde_json::Value| {
        v.as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    };
    let deadline = Instant::now() + std::time::Duration::from_secs(600);
    loop {
        let image: serde_json::Value = client
            .get(format!("{base}/v1/images/{id}"))
            .bearer_auth(key)
            .send()
            .await?
            .json()
            .await?;
        match image["status"].as_str() {
            Some("processed" | "failed") => {
                let (Some(done), Some(up)) =
                    (time(&image["processed_at"]), time(&image["uploaded_at"]))
                else {
                    anyhow::bail!("image {id} has no times: {image}");
                };
                return Ok((done - up).num_microseconds().unwrap_or(0) as f64 / 1e6);
            }
            _ if Instant::now() > deadline => {
                anyhow::bail!("image {id} was not processed: {image}")
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("imagelake-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
