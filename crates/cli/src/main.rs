//! The `imagelake` command: `serve` runs the whole system, `api` and `worker` run its two roles
//! apart; the other commands are clients of a running server (`customers`, `upload`) or measure
//! it (`bench`).

mod bench;
#[cfg(feature = "kafka")]
mod bench_kafka;
mod client;
mod config;
#[cfg(feature = "kafka")]
mod produce;
mod stream;

use clap::{Parser, Subcommand};
use imagelake_server::serve::Role;

#[derive(Parser)]
#[command(
    name = "imagelake",
    version,
    about = "Upload, process, keep and query images"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API, the processing workers and the retention sweeper in one process.
    Serve(config::ServeArgs),
    /// Run only the HTTP API (scale it apart from the workers).
    Api(config::ServeArgs),
    /// Run only processing and the retention sweeper, with /healthz, /readyz and /metrics.
    Worker(config::ServeArgs),
    /// Run only the Kafka image stream consumer (a consumer group member), with /healthz,
    /// /readyz and /metrics.
    KafkaIngest(config::ServeArgs),
    /// Manage customers (needs the admin token).
    #[command(subcommand)]
    Customers(client::CustomersCommand),
    /// Upload files and folders of images.
    Upload(client::UploadArgs),
    /// Work with the Kafka image stream.
    #[cfg(feature = "kafka")]
    #[command(subcommand)]
    Kafka(produce::KafkaCommand),
    /// Print the embedded deployment's lifecycle events (its SQLite event log) as JSON lines.
    Events(config::EventsArgs),
    /// Print the GCS bucket lifecycle rule that matches the configured retention.
    Lifecycle(config::ServeArgs),
    /// Measure processing speed and end-to-end upload throughput.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Several HTTP and cloud crates enable more than one rustls crypto provider; pick one first.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => config::serve(args, Role::All).await,
            Command::Api(args) => config::serve(args, Role::Api).await,
            Command::Worker(args) => config::serve(args, Role::Worker).await,
            Command::KafkaIngest(args) => config::serve(args, Role::Ingest).await,
            Command::Customers(cmd) => client::customers(cmd).await,
            Command::Upload(args) => client::upload(args).await,
            #[cfg(feature = "kafka")]
            Command::Kafka(cmd) => produce::run(cmd).await,
            Command::Events(args) => config::events(args).await,
            Command::Lifecycle(args) => config::lifecycle(args),
            Command::Bench(cmd) => bench::run(cmd).await,
        }
    })
}
