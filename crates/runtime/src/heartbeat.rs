//! Each process tells the others what it is doing: every [`BEAT_EVERY`] its background tasks and
//! their states go to the metadata store as its [`Heartbeat`], so the console of any `api`
//! process shows the workers, writers and consumers of every pod. A process that stops cleanly
//! says so in a last beat; one that was killed simply stops beating and shows as gone after
//! [`GONE_AFTER`]; the sweeper forgets it after [`FORGET_AFTER`].

use std::time::Duration;

use async_trait::async_trait;
use imagelake_core::records::{Heartbeat, TaskBeat};
use tokio_util::sync::CancellationToken;

use crate::{
    AppState,
    tasks::{OnFailure, Stage, Step, Task, TaskSpec},
};

pub const BEAT_EVERY: Duration = Duration::from_secs(5);
/// A process whose last beat is older than this is shown as gone.
pub const GONE_AFTER: chrono::Duration = chrono::Duration::seconds(30);
/// A process whose last beat is older than this is forgotten.
pub const FORGET_AFTER: chrono::Duration = chrono::Duration::days(1);

pub const SPEC: TaskSpec = TaskSpec {
    name: "heartbeat",
    required: false,
    on_failure: OnFailure::Retry,
    // The last to stop, so the last beat sees every other task stopped.
    stage: Stage::Report,
};

/// The task that beats for this process.
pub struct Heartbeats {
    state: AppState,
    beat: Heartbeat,
}

impl Heartbeats {
    /// The heartbeat of this process, running `role`.
    pub fn new(state: AppState, role: &str) -> Self {
        let host = host_name();
        let started_at = state.clock.now();
        let beat = Heartbeat {
            process: format!(
                "{host}-{}-{}",
                std::process::id(),
                started_at.timestamp_micros()
            ),
            role: role.to_owned(),
            host,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at,
            beat_at: started_at,
            stopped_at: None,
            tasks: Vec::new(),
        };
        Self { state, beat }
    }

    async fn send(&mut self) -> anyhow::Result<()> {
        let (tasks, _) = self.state.tasks.snapshot();
        self.beat.tasks = tasks
            .into_iter()
            .map(|(name, status)| TaskBeat {
                name: name.to_owned(),
                state: status.state.as_str().to_owned(),
                last_error: status.last_error,
                restarts: status.restarts,
                required: status.required,
            })
            .collect();
        self.beat.beat_at = self.state.clock.now();
        self.state.store.put_heartbeat(&self.beat).await?;
        Ok(())
    }
}

#[async_trait]
impl Task for Heartbeats {
    async fn step(&mut self, _: &CancellationToken) -> anyhow::Result<Step> {
        self.send().await?;
        Ok(Step::Idle)
    }

    async fn wait(&mut self, stop: &CancellationToken) {
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(BEAT_EVERY) => {}
        }
    }

    async fn finish(&mut self) {
        self.beat.stopped_at = Some(self.state.clock.now());
        if let Err(e) = self.send().await {
            tracing::warn!(error = %e, "the last heartbeat was not written");
        }
    }
}

/// The pod's name on Kubernetes (`HOSTNAME`), the machine's otherwise.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().replace('/', "-"))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}
