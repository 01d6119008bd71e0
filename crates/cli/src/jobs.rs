//! `imagelake jobs`: the scheduled jobs, on the metadata store the settings name (as Airflow's
//! CLI works on its database): list them, run one for an interval here and now, backfill a
//! range, read a job's history.

use std::sync::Arc;

use clap::Subcommand;
use imagelake_core::jobs::{JobRun, Reprocess};
use imagelake_runtime::{
    AppState,
    jobs::{
        Job,
        control::{self, RunHereError},
        scheduler::start_backfill,
    },
};

use crate::settings::ServeArgs;

#[derive(Subcommand)]
pub enum JobsCommand {
    /// The jobs: schedule, newest run and its state, next run.
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        settings: ServeArgs,
    },
    /// Run a job for one interval here and now, and exit 0 when it succeeded (for Airflow and
    /// Kubernetes CronJobs; switch the scheduler off there with `[jobs] scheduler = false`).
    /// Exits 75 when the interval's input is not complete yet or a scheduler holds the job,
    /// so the caller tries again; 1 when the run failed.
    Run {
        /// `lake-transform`, `lake-retention` or `image-retention`.
        name: String,
        /// `2026-11-30T10` for an hour, `2026-11-30` for a day, or an RFC 3339 time inside
        /// the interval (Airflow's `{{ data_interval_start | ts }}`).
        #[arg(long)]
        interval: String,
        #[command(flatten)]
        settings: ServeArgs,
    },
    /// Run a job for a range of intervals, beside its schedule; the scheduler runs it, and it
    /// carries on after restarts.
    Backfill {
        name: String,
        /// The first interval, included.
        #[arg(long)]
        from: String,
        /// The last interval, included.
        #[arg(long)]
        to: String,
        /// Which intervals: `missing` (never run), `failed` (and those whose last attempt
        /// failed) or `all`.
        #[arg(long, default_value = "missing", value_parser = ["missing", "failed", "all"])]
        reprocess: String,
        /// Runs of the backfill at once.
        #[arg(long, default_value_t = 2)]
        max_active: u32,
        #[command(flatten)]
        settings: ServeArgs,
    },
    /// A job's runs, newest first: every attempt of every interval.
    History {
        name: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        settings: ServeArgs,
    },
}

/// The exit status of a run whose input is not ready or whose job is busy: try again later.
const TRY_AGAIN: i32 = 75;

pub async fn run(command: JobsCommand) -> anyhow::Result<()> {
    match command {
        JobsCommand::List { json, settings } => {
            let state = open(&settings).await?;
            let jobs = control::overview(&state).await?;
            if json {
                for job in &jobs {
                    println!("{}", serde_json::to_string(job)?);
                }
                return Ok(());
            }
            println!(
                "{:<16} {:<12} {:<7} {:<8} {:<24} NEXT RUN",
                "JOB", "SCHEDULE", "PERIOD", "STATE", "LAST RUN"
            );
            for job in jobs {
                let last = job
                    .last_run
                    .as_ref()
                    .map_or("-".to_owned(), |r| format!("{} #{}", r.interval, r.attempt));
                let state = job.state.map_or("-", |s| s.as_str());
                let next = match (job.enabled, job.next_run) {
                    (false, _) => "disabled".to_owned(),
                    (true, Some(t)) => t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    (true, None) => "when run (scheduler off)".to_owned(),
                };
                println!(
                    "{:<16} {:<12} {:<7} {:<8} {:<24} {next}",
                    job.name, job.schedule, job.interval, state, last
                );
            }
            Ok(())
        }
        JobsCommand::Run {
            name,
            interval,
            settings,
        } => {
            let state = open(&settings).await?;
            let job = implementation(&state, &name)?;
            match control::run_here(&state, job, &interval).await {
                Ok(run) => {
                    println!("{}", serde_json::to_string(&run)?);
                    Ok(())
                }
                Err(RunHereError::Ended(run)) => {
                    println!("{}", serde_json::to_string(&run)?);
                    let error = run.error.as_deref().unwrap_or("failed");
                    eprintln!("{name} {}: {error}", run.interval);
                    let waiting = error.starts_with("waiting");
                    std::process::exit(if waiting { TRY_AGAIN } else { 1 });
                }
                Err(RunHereError::Busy(job)) => {
                    eprintln!("{}", RunHereError::Busy(job));
                    std::process::exit(TRY_AGAIN);
                }
                Err(e) => Err(e.into()),
            }
        }
        JobsCommand::Backfill {
            name,
            from,
            to,
            reprocess,
            max_active,
            settings,
        } => {
            let state = open(&settings).await?;
            let info = control::find(&state, &name)?;
            let reprocess = Reprocess::parse(&reprocess).map_err(anyhow::Error::msg)?;
            let backfill = start_backfill(&state, info.name, &from, &to, reprocess, max_active)
                .await
                .map_err(anyhow::Error::msg)?;
            println!("{}", serde_json::to_string(&backfill)?);
            if !state.settings.jobs.scheduler {
                eprintln!(
                    "note: the scheduler is off in these settings; a scheduler must run to carry the backfill out"
                );
            }
            Ok(())
        }
        JobsCommand::History {
            name,
            limit,
            json,
            settings,
        } => {
            let state = open(&settings).await?;
            let info = control::find(&state, &name)?;
            let runs = state.store.recent_runs(info.name, None, limit).await?;
            if json {
                for run in &runs {
                    println!("{}", serde_json::to_string(run)?);
                }
            } else {
                print_history(&runs);
            }
            Ok(())
        }
    }
}

fn print_history(runs: &[JobRun]) {
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or("-".to_owned(), |t| {
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        })
    };
    println!(
        "{:<17} {:>3} {:<9} {:<8} {:<20} {:<20} {:>9} ERROR",
        "INTERVAL", "#", "TRIGGER", "STATE", "STARTED", "ENDED", "ROWS"
    );
    for run in runs {
        println!(
            "{:<17} {:>3} {:<9} {:<8} {:<20} {:<20} {:>9} {}",
            run.interval,
            run.attempt,
            run.trigger.as_str(),
            run.state.as_str(),
            time(run.started_at),
            time(run.ended_at),
            run.rows.map_or("-".to_owned(), |r| r.to_string()),
            run.error.as_deref().unwrap_or("")
        );
    }
}

async fn open(args: &ServeArgs) -> anyhow::Result<AppState> {
    let settings = args.settings()?;
    std::fs::create_dir_all(&settings.data_dir)?;
    AppState::from_settings(settings).await
}

/// The jobs beyond the image retention: the lake's retention and its transforms.
#[cfg(feature = "lake")]
pub fn lake_jobs(state: &AppState) -> Vec<Arc<dyn Job>> {
    vec![
        Arc::new(imagelake_lake::LakeRetention::new(state)),
        Arc::new(imagelake_sql::Transforms::new(state)),
    ]
}

#[cfg(not(feature = "lake"))]
pub fn lake_jobs(_: &AppState) -> Vec<Arc<dyn Job>> {
    Vec::new()
}

/// The job named `name`, ready to run.
fn implementation(state: &AppState, name: &str) -> anyhow::Result<Arc<dyn Job>> {
    let info = control::find(state, name)?;
    let image: Arc<dyn Job> = Arc::new(imagelake_runtime::sweeper::ImageRetention::new(
        state.clone(),
    ));
    std::iter::once(image)
        .chain(lake_jobs(state))
        .find(|j| j.name() == info.name)
        .ok_or_else(|| anyhow::anyhow!("{name} is not in this build (it needs the `lake` feature)"))
}
