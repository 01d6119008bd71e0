//! The `imagelake` command: `serve` runs the whole system, `api`, `worker`, `kafka-ingest`,
//! `lake-writer` and `scheduler` run its roles apart, `jobs` drives the scheduled jobs; the other commands are clients of a running server (`customers`, `upload`) or measure
//! it (`bench`).

mod bench;
#[cfg(feature = "kafka")]
mod bench_kafka;
#[cfg(feature = "lake")]
mod bench_lake;
#[cfg(feature = "lake")]
mod bench_sql;
#[cfg(feature = "lake")]
mod bench_transform;
mod client;
mod events;
mod jobs;
#[cfg(feature = "kafka")]
mod produce;
mod serve;
mod settings;
#[cfg(feature = "lake")]
mod sql;
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
    /// Run the API, the processing workers, the lake writer and the scheduler in one process.
    Serve(settings::ServeArgs),
    /// Run only the HTTP API (scale it apart from the workers).
    Api(settings::ServeArgs),
    /// Run only processing, with /healthz, /readyz and /metrics.
    Worker(settings::ServeArgs),
    /// Run only the Kafka image stream consumer (a consumer group member), with /healthz,
    /// /readyz and /metrics.
    KafkaIngest(settings::ServeArgs),
    /// Run only the lake writer (a member of the `[lake] group_id` consumer group; needs
    /// brokers), with /healthz, /readyz and /metrics.
    LakeWriter(settings::ServeArgs),
    /// Run only the scheduler of the jobs (any number of replicas: each job runs in one at a
    /// time), with /healthz, /readyz and /metrics.
    Scheduler(settings::ServeArgs),
    /// The scheduled jobs: list, run one interval, backfill, history.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// Manage customers (needs the admin token).
    #[command(subcommand)]
    Customers(client::CustomersCommand),
    /// Manage company keys with a role (`ingest`, `analyst`; needs the admin token).
    #[command(subcommand)]
    Keys(client::KeysCommand),
    /// Upload files and folders of images.
    Upload(client::UploadArgs),
    /// Query the lake with SQL: against a server with `--key`, or the local data dir.
    #[cfg(feature = "lake")]
    Sql(sql::SqlArgs),
    /// BigQuery over the same files: `bigquery ddl --dataset D --bucket B`.
    #[cfg(feature = "lake")]
    #[command(subcommand)]
    Bigquery(sql::BigqueryCommand),
    /// Work with the Kafka image stream.
    #[cfg(feature = "kafka")]
    #[command(subcommand)]
    Kafka(produce::KafkaCommand),
    /// Print the embedded deployment's lifecycle events (its SQLite event log) as JSON lines.
    Events(events::EventsArgs),
    /// Print the GCS bucket lifecycle rule that matches the configured retention.
    Lifecycle(settings::ServeArgs),
    /// Measure processing speed and end-to-end upload throughput.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// The stack of each thread that runs the command (the runtime's, and the one that drives it).
const RUNTIME_STACK_BYTES: usize = 64 << 20;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The command is driven from a thread with the runtime threads' stack, not the main
    // thread's 8 MiB.
    let result = std::thread::Builder::new()
        .name("imagelake".into())
        .stack_size(RUNTIME_STACK_BYTES)
        .spawn(move || run(cli))
        .map_err(anyhow::Error::from)
        .and_then(|thread| {
            thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            report(&error);
            std::process::ExitCode::FAILURE
        }
    }
}

/// An error as the user needs it: what failed and why, never a stack trace (an error here is
/// the user's input or the world, not a bug; `RUST_BACKTRACE` is for panics).
fn report(error: &anyhow::Error) {
    eprintln!("Error: {error}");
    let causes: Vec<_> = error.chain().skip(1).collect();
    if !causes.is_empty() {
        eprintln!("\nCaused by:");
        for (i, cause) in causes.iter().enumerate() {
            eprintln!("    {i}: {cause}");
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // Several HTTP and cloud crates enable more than one rustls crypto provider; pick one first.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Plans and expressions are trees walked recursively (by the SQL planner, the optimizer and
    // the evaluation of a long `AND` chain): room for the deepest a 64 KiB query can make, on
    // every thread of the runtime (address space only until used).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(RUNTIME_STACK_BYTES)
        .build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::serve(args, Role::All).await,
            Command::Api(args) => serve::serve(args, Role::Api).await,
            Command::Worker(args) => serve::serve(args, Role::Worker).await,
            Command::KafkaIngest(args) => serve::serve(args, Role::Ingest).await,
            Command::LakeWriter(args) => serve::serve(args, Role::LakeWriter).await,
            Command::Scheduler(args) => serve::serve(args, Role::Scheduler).await,
            Command::Jobs(cmd) => jobs::run(cmd).await,
            Command::Customers(cmd) => client::customers(cmd).await,
            Command::Keys(cmd) => client::keys(cmd).await,
            Command::Upload(args) => client::upload(args).await,
            #[cfg(feature = "lake")]
            Command::Sql(args) => sql::run(args).await,
            #[cfg(feature = "lake")]
            Command::Bigquery(cmd) => sql::bigquery(cmd).await,
            #[cfg(feature = "kafka")]
            Command::Kafka(cmd) => produce::run(cmd).await,
            Command::Events(args) => events::events(args).await,
            Command::Lifecycle(args) => settings::lifecycle(args),
            Command::Bench(cmd) => bench::run(cmd).await,
        }
    })
}
