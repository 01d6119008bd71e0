//! One runtime for every background task of every role: the processing workers, the scheduler
//! of the jobs, the Kafka stream consumer, the event publisher and the lake writers.
//!
//! A [`Task`] does its work in steps small enough that stopping between two of them loses
//! nothing, and waits between them in a way a stop can cut short (garage's `Worker`). The
//! [`Supervisor`] runs each task in a loop of `step` and `wait`, records what it is doing on the
//! [`TaskBoard`] (`/readyz` shows it under `checks.tasks`, `/metrics` as `imagelake_task_state`
//! and `imagelake_task_restarts_total`), and decides what a failure means: a task that may
//! simply try again is retried with backoff (its state `failing` until a step succeeds), and a
//! task whose failure must stop the process (the stream consumer: a consumer that no longer
//! consumes must not sit behind a healthy port) makes [`Supervisor::failure`] resolve. A panic
//! in a step is a failure like any other.
//!
//! Shutdown goes stage by stage, in [`Stage`] order: intake stops first (the stream consumer
//! commits what it stored), then work in flight is finished (the workers finish the images
//! they hold), then what is buffered is flushed (the event publisher gives up its lease), and last
//! the heartbeat says the process stopped. A task
//! learns of its stage's stop in `step` and `wait`, and `finish` runs after its last step.

use std::{
    collections::BTreeMap,
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use futures::FutureExt;
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What a step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// There may be more work at once: step again.
    Busy,
    /// Nothing to do for now: wait.
    Idle,
    /// Work is in hand (started by this step or an earlier one) and nothing more can start:
    /// wait, still running.
    Waiting,
}

/// A background task, as steps and waits.
#[async_trait]
pub trait Task: Send + 'static {
    /// One unit of work. `stop` is cancelled when the task's stage stops; a step that waits on
    /// something outside (a message, a lease) returns early then.
    async fn step(&mut self, stop: &CancellationToken) -> anyhow::Result<Step>;

    /// Waits until there may be work again, or `stop`.
    async fn wait(&mut self, stop: &CancellationToken);

    /// Finishes or hands back what is in flight, after the last step.
    async fn finish(&mut self) {}
}

/// When a task stops at shutdown; earlier stages stop first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Takes work in from outside (the stream consumer).
    Intake,
    /// Does the work taken in (the workers, the sweeper).
    Work,
    /// Sends what the work produced elsewhere (the event publisher).
    Flush,
    /// Reports on the others (the heartbeat), so its last word sees every other task stopped.
    Report,
}

/// What a failed step means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Step again after a backoff (250 ms, doubling up to 30 s).
    Retry,
    /// Stop the process, so its supervisor (Kubernetes) starts a fresh one.
    StopProcess,
}

/// How a task is run.
#[derive(Debug, Clone, Copy)]
pub struct TaskSpec {
    pub name: &'static str,
    /// The process is not ready while this task fails.
    pub required: bool,
    pub on_failure: OnFailure,
    pub stage: Stage,
}

/// What a task is doing, as `/readyz` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// In a step, or waiting on work in hand.
    Running,
    /// Waiting for work.
    Idle,
    /// Its last step failed; it is retried with backoff.
    Failing,
}

impl TaskState {
    pub const ALL: [TaskState; 3] = [Self::Running, Self::Idle, Self::Failing];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Idle => "idle",
            Self::Failing => "failing",
        }
    }
}

/// One task's line on the board.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskStatus {
    pub state: TaskState,
    pub last_error: Option<String>,
    /// Steps tried again after a failure, since the process started.
    pub restarts: u64,
    #[serde(skip)]
    pub required: bool,
}

/// Every task's status, shared with `/readyz` and `/metrics`.
#[derive(Debug, Default)]
pub struct TaskBoard {
    tasks: Mutex<BTreeMap<&'static str, TaskStatus>>,
}

impl TaskBoard {
    fn update(&self, name: &'static str, change: impl FnOnce(&mut TaskStatus)) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(status) = tasks.get_mut(name) {
            change(status);
        }
    }

    fn register(&self, spec: &TaskSpec) {
        let status = TaskStatus {
            state: TaskState::Idle,
            last_error: None,
            restarts: 0,
            required: spec.required,
        };
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(spec.name, status);
    }

    fn set(&self, name: &'static str, state: TaskState) {
        self.update(name, |s| s.state = state);
    }

    fn failed(&self, name: &'static str, error: &anyhow::Error) {
        self.update(name, |s| {
            s.state = TaskState::Failing;
            s.last_error = Some(format!("{error:#}"));
        });
    }

    fn retried(&self, name: &'static str) {
        self.update(name, |s| s.restarts += 1);
    }

    /// Every task's status, and whether no required task is failing.
    pub fn snapshot(&self) -> (BTreeMap<&'static str, TaskStatus>, bool) {
        let tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        let ready = tasks
            .values()
            .all(|s| !s.required || s.state != TaskState::Failing);
        (tasks.clone(), ready)
    }
}

const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Runs tasks, watches them, and stops them in order.
pub struct Supervisor {
    board: Arc<TaskBoard>,
    stages: BTreeMap<Stage, (CancellationToken, Vec<JoinHandle<()>>)>,
    fatal: CancellationToken,
    fatal_error: Arc<Mutex<Option<anyhow::Error>>>,
}

impl Supervisor {
    /// A supervisor that reports on `board`.
    pub fn new(board: Arc<TaskBoard>) -> Self {
        Self {
            board,
            stages: BTreeMap::new(),
            fatal: CancellationToken::new(),
            fatal_error: Arc::default(),
        }
    }

    /// Starts `task`.
    pub fn spawn(&mut self, spec: TaskSpec, task: Box<dyn Task>) {
        self.board.register(&spec);
        let (stop, handles) = self
            .stages
            .entry(spec.stage)
            .or_insert_with(|| (CancellationToken::new(), Vec::new()));
        let driver = Driver {
            spec,
            task,
            board: Arc::clone(&self.board),
            stop: stop.clone(),
            fatal: self.fatal.clone(),
            fatal_error: Arc::clone(&self.fatal_error),
        };
        handles.push(tokio::spawn(driver.run()));
    }

    /// Resolves when a task whose failure stops the process failed, with its error; pending
    /// forever otherwise.
    pub async fn failure(&self) -> anyhow::Error {
        self.fatal.cancelled().await;
        self.fatal_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_else(|| anyhow::anyhow!("a task failed"))
    }

    /// Stops the tasks stage by stage: each stage's tasks end their step or wait, finish what
    /// they hold, and are awaited before the next stage is told to stop.
    pub async fn shutdown(self) {
        for (stage, (stop, handles)) in self.stages {
            stop.cancel();
            for handle in handles {
                if let Err(e) = handle.await {
                    tracing::error!(?stage, error = %e, "a task did not stop cleanly");
                }
            }
            tracing::debug!(?stage, "tasks stopped");
        }
    }
}

/// One task's loop.
struct Driver {
    spec: TaskSpec,
    task: Box<dyn Task>,
    board: Arc<TaskBoard>,
    stop: CancellationToken,
    fatal: CancellationToken,
    fatal_error: Arc<Mutex<Option<anyhow::Error>>>,
}

impl Driver {
    async fn run(mut self) {
        let name = self.spec.name;
        let mut backoff = RETRY_FIRST;
        let mut failed = false;
        while !self.stop.is_cancelled() {
            self.board.set(name, TaskState::Running);
            let step = AssertUnwindSafe(self.task.step(&self.stop))
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| {
                    Err(anyhow::anyhow!("panicked: {}", panic_message(&panic)))
                });
            match step {
                Ok(Step::Busy) => backoff = RETRY_FIRST,
                Ok(Step::Idle) => {
                    backoff = RETRY_FIRST;
                    self.board.set(name, TaskState::Idle);
                    self.task.wait(&self.stop).await;
                }
                Ok(Step::Waiting) => {
                    backoff = RETRY_FIRST;
                    self.task.wait(&self.stop).await;
                }
                Err(error) => {
                    self.board.failed(name, &error);
                    if self.spec.on_failure == OnFailure::StopProcess {
                        tracing::error!(
                            task = name,
                            error = format!("{error:#}"),
                            "task failed; the process stops"
                        );
                        *self.fatal_error.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(error.context(format!("the {name} failed")));
                        self.fatal.cancel();
                        failed = true;
                        break;
                    }
                    tracing::warn!(task = name, error = format!("{error:#}"), retry_in = ?backoff, "task step failed; it is tried again");
                    tokio::select! {
                        () = self.stop.cancelled() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    self.board.retried(name);
                    backoff = (backoff * 2).min(RETRY_MAX);
                }
            }
        }
        self.task.finish().await;
        // A task that stopped the process stays `failing` on the board until the process ends.
        if !failed {
            self.board.set(name, TaskState::Idle);
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// Fails its first `failures` steps, then counts the good ones.
    struct Flaky {
        failures: u32,
        done: Arc<AtomicU32>,
        finished: Arc<AtomicU32>,
        panics: bool,
    }

    #[async_trait]
    impl Task for Flaky {
        async fn step(&mut self, _: &CancellationToken) -> anyhow::Result<Step> {
            if self.failures > 0 {
                self.failures -= 1;
                if self.panics {
                    panic!("boom");
                }
                anyhow::bail!("not yet");
            }
            self.done.fetch_add(1, Ordering::SeqCst);
            Ok(Step::Idle)
        }

        async fn wait(&mut self, stop: &CancellationToken) {
            stop.cancelled().await;
        }

        async fn finish(&mut self) {
            self.finished.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn spec(name: &'static str, on_failure: OnFailure) -> TaskSpec {
        TaskSpec {
            name,
            required: true,
            on_failure,
            stage: Stage::Work,
        }
    }

    async fn until(deadline: Duration, mut probe: impl FnMut() -> bool) {
        let end = tokio::time::Instant::now() + deadline;
        while !probe() {
            assert!(
                tokio::time::Instant::now() < end,
                "condition not met in time"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_failing_task_is_retried_and_shows_on_the_board() {
        let board = Arc::new(TaskBoard::default());
        let mut supervisor = Supervisor::new(Arc::clone(&board));
        let (done, finished) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let task = Flaky {
            failures: 2,
            done: Arc::clone(&done),
            finished: Arc::clone(&finished),
            panics: true,
        };
        supervisor.spawn(spec("flaky", OnFailure::Retry), Box::new(task));
        until(Duration::from_secs(10), || done.load(Ordering::SeqCst) == 1).await;
        let (tasks, ready) = board.snapshot();
        let status = &tasks["flaky"];
        assert_eq!(status.restarts, 2);
        assert_eq!(status.last_error.as_deref(), Some("panicked: boom"));
        assert_eq!(status.state, TaskState::Idle);
        assert!(ready);
        supervisor.shutdown().await;
        assert_eq!(
            finished.load(Ordering::SeqCst),
            1,
            "finish runs at shutdown"
        );
    }

    #[tokio::test]
    async fn a_fatal_failure_stops_the_process_and_unreadies_it() {
        let board = Arc::new(TaskBoard::default());
        let mut supervisor = Supervisor::new(Arc::clone(&board));
        let task = Flaky {
            failures: 1,
            done: Arc::default(),
            finished: Arc::default(),
            panics: false,
        };
        supervisor.spawn(spec("consumer", OnFailure::StopProcess), Box::new(task));
        let error = tokio::time::timeout(Duration::from_secs(10), supervisor.failure())
            .await
            .expect("the failure is reported");
        assert!(format!("{error:#}").contains("the consumer failed: not yet"));
        let (tasks, ready) = board.snapshot();
        assert_eq!(tasks["consumer"].state, TaskState::Failing);
        assert!(
            !ready,
            "a required task that failed makes the process unready"
        );
        supervisor.shutdown().await;
    }

    /// Holds one piece of work until `release`, as the workers hold an image.
    struct Holder {
        release: Arc<tokio::sync::Notify>,
        waiting: Arc<tokio::sync::Notify>,
        held: bool,
    }

    #[async_trait]
    impl Task for Holder {
        async fn step(&mut self, _: &CancellationToken) -> anyhow::Result<Step> {
            Ok(if self.held { Step::Waiting } else { Step::Idle })
        }

        async fn wait(&mut self, stop: &CancellationToken) {
            if self.held {
                self.waiting.notify_one();
                tokio::select! {
                    () = self.release.notified() => self.held = false,
                    () = stop.cancelled() => {}
                }
            } else {
                stop.cancelled().await;
            }
        }
    }

    #[tokio::test]
    async fn a_task_waiting_on_work_in_hand_shows_running() {
        let board = Arc::new(TaskBoard::default());
        let mut supervisor = Supervisor::new(Arc::clone(&board));
        let (release, waiting) = (Arc::default(), Arc::<tokio::sync::Notify>::default());
        let task = Holder {
            release: Arc::clone(&release),
            waiting: Arc::clone(&waiting),
            held: true,
        };
        supervisor.spawn(spec("workers", OnFailure::Retry), Box::new(task));
        waiting.notified().await;
        let state = || board.snapshot().0["workers"].state;
        assert_eq!(state(), TaskState::Running, "waiting on work in hand");
        release.notify_one();
        until(Duration::from_secs(10), || state() == TaskState::Idle).await;
        supervisor.shutdown().await;
    }

    /// Records the order in which tasks finish.
    struct Recorder {
        name: &'static str,
        log: Arc<Mutex<Vec<&'static str>>>,
    }

    #[async_trait]
    impl Task for Recorder {
        async fn step(&mut self, _: &CancellationToken) -> anyhow::Result<Step> {
            Ok(Step::Idle)
        }

        async fn wait(&mut self, stop: &CancellationToken) {
            stop.cancelled().await;
        }

        async fn finish(&mut self) {
            self.log.lock().unwrap().push(self.name);
        }
    }

    #[tokio::test]
    async fn shutdown_goes_stage_by_stage() {
        let board = Arc::new(TaskBoard::default());
        let mut supervisor = Supervisor::new(board);
        let log = Arc::new(Mutex::new(Vec::new()));
        for (name, stage) in [
            ("publisher", Stage::Flush),
            ("workers", Stage::Work),
            ("consumer", Stage::Intake),
        ] {
            let spec = TaskSpec {
                name,
                required: false,
                on_failure: OnFailure::Retry,
                stage,
            };
            let task = Recorder {
                name,
                log: Arc::clone(&log),
            };
            supervisor.spawn(spec, Box::new(task));
        }
        supervisor.shutdown().await;
        assert_eq!(*log.lock().unwrap(), ["consumer", "workers", "publisher"]);
    }
}
