//! The scheduler on an injected clock and a SQLite store on disk: hourly runs at their times,
//! runs that wait for their input, catch-up after a gap, a week's backfill beside the
//! schedule, retries and the late flag, two replicas, and a backfill carried on by a new
//! holder after the first one died.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use imagelake_core::{
    ManualClock,
    jobs::{BackfillState, Interval, JobRun, Period, Reprocess, RunState, Trigger},
    records::Heartbeat,
};
use imagelake_metadata::SqliteStore;
use imagelake_runtime::{
    AppState, Settings,
    jobs::{Job, JobError, LAKE_TRANSFORM, Scheduler, scheduler::start_backfill},
    keys::AdminToken,
};
use object_store::local::LocalFileSystem;
use tokio::sync::Semaphore;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// A job that records its calls and can be held, failed or kept waiting.
#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<String>>,
    not_ready: AtomicBool,
    failing: AtomicBool,
    /// When set, a run takes a permit before it ends.
    gate: Option<Semaphore>,
    active: AtomicUsize,
    most_active: AtomicUsize,
}

impl Fake {
    fn gated() -> Self {
        Self {
            gate: Some(Semaphore::new(0)),
            ..Self::default()
        }
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl Job for Fake {
    fn name(&self) -> &'static str {
        LAKE_TRANSFORM
    }

    async fn run(&self, interval: Interval) -> Result<u64, JobError> {
        if self.not_ready.load(Ordering::SeqCst) {
            return Err(JobError::NotReady("no _SUCCESS yet".to_owned()));
        }
        self.calls.lock().unwrap().push(interval.key());
        let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_active.fetch_max(now, Ordering::SeqCst);
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        self.active.fetch_sub(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return Err(JobError::Failed(anyhow::anyhow!(
                "the lake was unreachable"
            )));
        }
        Ok(7)
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    state: AppState,
    clock: Arc<ManualClock>,
}

/// A deployment running since the day before `start`, on a clock at `start`.
async fn fixture(start: &str) -> Fixture {
    let f = new_deployment(start);
    let day_before = at(start) - chrono::Duration::days(1);
    let beat = Heartbeat {
        process: "earlier".into(),
        role: "serve".into(),
        host: "here".into(),
        version: "0".into(),
        started_at: day_before,
        beat_at: day_before,
        stopped_at: None,
        tasks: Vec::new(),
    };
    f.state.store.put_heartbeat(&beat).await.unwrap();
    f
}

/// A deployment whose first process starts at `start`.
fn new_deployment(start: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings {
        data_dir: dir.path().to_owned(),
        ..Settings::default()
    };
    settings.jobs.retries = 2;
    // A fortnight of lake, so the week's backfill lies within it.
    settings.lake.retention = Some(imagelake_core::duration::HumanDuration(
        Duration::from_secs(14 * 86_400),
    ));
    let store = Arc::new(SqliteStore::open(&dir.path().join("metadata.sqlite")).unwrap());
    let clock = Arc::new(ManualClock::new(at(start)));
    let objects = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let state = AppState::assemble(
        settings,
        objects,
        store.clone(),
        store,
        clock.clone(),
        AdminToken::from_secret("admin"),
    );
    Fixture {
        _dir: dir,
        state,
        clock,
    }
}

fn scheduler(f: &Fixture, job: &Arc<Fake>) -> Scheduler {
    let job: Arc<dyn Job> = job.clone();
    Scheduler::new(f.state.clone(), vec![job]).unwrap()
}

/// Rounds until `done` holds (runs end on tasks of their own), within 30 s.
async fn rounds_until(scheduler: &mut Scheduler, what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        scheduler.round().await.unwrap();
        if done().await {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn history(state: &AppState) -> Vec<JobRun> {
    let mut runs = state
        .store
        .recent_runs(LAKE_TRANSFORM, None, 10_000)
        .await
        .unwrap();
    runs.reverse();
    runs
}

async fn state_of(state: &AppState, interval: &str) -> Option<RunState> {
    let runs = state
        .store
        .runs_between(LAKE_TRANSFORM, interval, interval)
        .await
        .unwrap();
    runs.last().map(|r| r.state)
}

fn metric(state: &AppState, line_start: &str) -> Option<String> {
    state
        .metrics
        .render()
        .lines()
        .find(|l| l.starts_with(line_start))
        .map(str::to_owned)
}

#[tokio::test]
async fn hourly_runs_come_at_their_times() {
    let f = fixture("2026-11-30T10:09:59Z").await;
    let job = Arc::new(Fake::default());
    let mut scheduler = scheduler(&f, &job);
    // The newest firing (09:10) was for hour 08: a first start runs that one only.
    rounds_until(&mut scheduler, "hour 08", async || {
        state_of(&f.state, "2026-11-30T08").await == Some(RunState::Success)
    })
    .await;
    f.clock.set(at("2026-11-30T10:10:00Z"));
    rounds_until(&mut scheduler, "hour 09", async || {
        state_of(&f.state, "2026-11-30T09").await == Some(RunState::Success)
    })
    .await;
    f.clock.set(at("2026-11-30T11:09:00Z"));
    scheduler.round().await.unwrap();
    assert!(!scheduler.is_running());
    assert_eq!(job.calls(), ["2026-11-30T08", "2026-11-30T09"]);
    let runs = history(&f.state).await;
    assert!(runs.iter().all(|r| r.trigger == Trigger::Scheduled));
    assert_eq!(runs[1].rows, Some(7));
    assert_eq!(runs[1].started_at, Some(at("2026-11-30T10:10:00Z")));
    let success = metric(&f.state, "imagelake_job_last_success_timestamp_seconds").unwrap();
    assert!(success.contains("job=\"lake-transform\""), "{success}");
}

#[tokio::test]
async fn a_new_deployment_begins_with_the_hour_it_began_in() {
    let f = new_deployment("2026-11-30T10:09:59Z");
    let job = Arc::new(Fake::default());
    let mut new = scheduler(&f, &job);
    // Hours 08 and 09 ended before anything here could have written their input.
    for now in [
        "2026-11-30T10:09:59Z",
        "2026-11-30T10:10:00Z",
        "2026-11-30T11:09:59Z",
    ] {
        f.clock.set(at(now));
        new.round().await.unwrap();
        assert!(
            history(&f.state).await.is_empty(),
            "nothing queued at {now}"
        );
    }
    assert_eq!(
        metric(&f.state, "imagelake_job_late{").as_deref(),
        Some("imagelake_job_late{job=\"lake-transform\"} 0")
    );
    f.clock.set(at("2026-11-30T11:10:00Z"));
    rounds_until(&mut new, "hour 10", async || {
        state_of(&f.state, "2026-11-30T10").await == Some(RunState::Success)
    })
    .await;
    assert_eq!(job.calls(), ["2026-11-30T10"]);

    // A replica started later on the same store goes by when the first process began.
    let f = new_deployment("2026-11-30T10:09:59Z");
    let beat = |process: &str, started_at: &str| Heartbeat {
        process: process.into(),
        role: "scheduler".into(),
        host: "here".into(),
        version: "0".into(),
        started_at: at(started_at),
        beat_at: at(started_at),
        stopped_at: None,
        tasks: Vec::new(),
    };
    for (process, started_at) in [
        ("first", "2026-11-30T08:30:00Z"),
        ("second", "2026-11-30T10:00:00Z"),
    ] {
        f.state
            .store
            .put_heartbeat(&beat(process, started_at))
            .await
            .unwrap();
    }
    let job = Arc::new(Fake::default());
    let mut replica = scheduler(&f, &job);
    rounds_until(&mut replica, "hour 08", async || {
        state_of(&f.state, "2026-11-30T08").await == Some(RunState::Success)
    })
    .await;
    assert_eq!(job.calls(), ["2026-11-30T08"]);
}

#[tokio::test]
async fn a_run_waits_for_its_input_and_is_flagged_late() {
    let f = fixture("2026-11-30T11:10:00Z").await;
    let job = Arc::new(Fake::default());
    job.not_ready.store(true, Ordering::SeqCst);
    let mut scheduler = scheduler(&f, &job);
    rounds_until(&mut scheduler, "a waiting run", async || {
        let runs = history(&f.state).await;
        runs.len() == 1 && runs[0].error.as_deref() == Some("waiting: no _SUCCESS yet")
    })
    .await;
    let run = &history(&f.state).await[0];
    assert_eq!(run.state, RunState::Queued, "waiting is not failing");
    assert_eq!(run.attempt, 1);
    assert_eq!(run.not_before, at("2026-11-30T11:10:30Z"));
    assert_eq!(
        metric(&f.state, "imagelake_job_late{").as_deref(),
        Some("imagelake_job_late{job=\"lake-transform\"} 0")
    );

    // Past 11:00 + 30 min it is late; once its input comes it runs and is late no more.
    f.clock.set(at("2026-11-30T11:31:00Z"));
    scheduler.round().await.unwrap();
    assert_eq!(
        metric(&f.state, "imagelake_job_late{").as_deref(),
        Some("imagelake_job_late{job=\"lake-transform\"} 1")
    );
    job.not_ready.store(false, Ordering::SeqCst);
    // The round above started it once more; once that try is recorded, it looks again in 30 s.
    rounds_until(&mut scheduler, "the try at 11:31 recorded", async || {
        state_of(&f.state, "2026-11-30T10").await != Some(RunState::Running)
    })
    .await;
    f.clock.set(at("2026-11-30T11:32:00Z"));
    rounds_until(&mut scheduler, "the run after its input", async || {
        state_of(&f.state, "2026-11-30T10").await == Some(RunState::Success)
    })
    .await;
    scheduler.round().await.unwrap();
    assert_eq!(
        metric(&f.state, "imagelake_job_late{").as_deref(),
        Some("imagelake_job_late{job=\"lake-transform\"} 0")
    );
    assert_eq!(history(&f.state).await.len(), 1, "still the first attempt");
}

#[tokio::test]
async fn missed_hours_run_oldest_first_after_a_gap() {
    let f = fixture("2026-11-30T10:10:00Z").await;
    let job = Arc::new(Fake::default());
    let mut first = scheduler(&f, &job);
    rounds_until(&mut first, "hour 09", async || {
        state_of(&f.state, "2026-11-30T09").await == Some(RunState::Success)
    })
    .await;
    drop(first);

    // Down from 10:10 to 15:15, and the catch-up window is 5 hours (back to 10:15): 11 to 14
    // run; 10, which holds the window's start, does not (the lake retention is deleting it).
    let mut settings = (*f.state.settings).clone();
    settings.jobs.catchup_window = Some(imagelake_core::duration::HumanDuration(
        Duration::from_secs(5 * 3600),
    ));
    let state = AppState::assemble(
        settings,
        f.state.objects.clone(),
        f.state.store.clone(),
        f.state.queue.clone(),
        f.clock.clone(),
        AdminToken::from_secret("admin"),
    );
    f.clock.set(at("2026-11-30T15:15:00Z"));
    let job = Arc::new(Fake::default());
    let mut restarted = Scheduler::new(state.clone(), vec![job.clone() as Arc<dyn Job>]).unwrap();
    rounds_until(&mut restarted, "the missed hours", async || {
        state_of(&state, "2026-11-30T14").await == Some(RunState::Success)
    })
    .await;
    assert_eq!(
        job.calls(),
        [
            "2026-11-30T11",
            "2026-11-30T12",
            "2026-11-30T13",
            "2026-11-30T14"
        ]
    );
    let runs = history(&state).await;
    let triggers: Vec<(&str, Trigger)> = runs
        .iter()
        .map(|r| (r.interval.as_str(), r.trigger))
        .collect();
    assert_eq!(
        triggers,
        [
            ("2026-11-30T09", Trigger::Scheduled),
            ("2026-11-30T11", Trigger::Catchup),
            ("2026-11-30T12", Trigger::Catchup),
            ("2026-11-30T13", Trigger::Catchup),
            ("2026-11-30T14", Trigger::Scheduled),
        ]
    );
}

#[tokio::test]
async fn a_week_of_backfill_keeps_two_open_and_never_delays_the_schedule() {
    let f = fixture("2026-11-30T10:05:00Z").await;
    let job = Arc::new(Fake::gated());
    let mut scheduler = scheduler(&f, &job);
    // The first run (hour 08) is held: the lane of the schedule is busy with it.
    rounds_until(&mut scheduler, "hour 08 started", async || {
        job.calls().len() == 1
    })
    .await;
    let backfill = start_backfill(
        &f.state,
        LAKE_TRANSFORM,
        "2026-11-20T00",
        "2026-11-26T23",
        Reprocess::All,
        2,
    )
    .await
    .unwrap();
    rounds_until(&mut scheduler, "two backfill runs", async || {
        job.active.load(Ordering::SeqCst) == 3
    })
    .await;
    // Hour 08 ends; 10:10 comes while both backfill runs still hold: hour 09 runs at once.
    job.gate.as_ref().unwrap().add_permits(1);
    rounds_until(&mut scheduler, "hour 08 done", async || {
        state_of(&f.state, "2026-11-30T08").await == Some(RunState::Success)
    })
    .await;
    f.clock.set(at("2026-11-30T10:10:00Z"));
    rounds_until(&mut scheduler, "hour 09 started", async || {
        job.calls().contains(&"2026-11-30T09".to_owned())
    })
    .await;
    let started = history(&f.state)
        .await
        .into_iter()
        .find(|r| r.interval == "2026-11-30T09")
        .unwrap();
    assert_eq!(started.started_at, Some(at("2026-11-30T10:10:00Z")));

    // Everything is let through; the backfill runs its 168 hours, two at a time, oldest first.
    job.gate.as_ref().unwrap().add_permits(10_000);
    rounds_until(&mut scheduler, "the backfill done", async || {
        let backfill = f
            .state
            .store
            .get_backfill(backfill.id)
            .await
            .unwrap()
            .unwrap();
        backfill.state == BackfillState::Done
    })
    .await;
    let done = f
        .state
        .store
        .get_backfill(backfill.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((done.queued, done.succeeded, done.failed), (168, 168, 0));
    assert_eq!(
        job.most_active.load(Ordering::SeqCst),
        3,
        "two backfill runs and one scheduled"
    );
    let backfilled: Vec<String> = job
        .calls()
        .into_iter()
        .filter(|k| k.as_str() < "2026-11-27")
        .collect();
    assert_eq!(backfilled.len(), 168);
    assert_eq!(
        backfilled.first().map(String::as_str),
        Some("2026-11-20T00")
    );
    assert_eq!(backfilled.last().map(String::as_str), Some("2026-11-26T23"));
}

#[tokio::test]
async fn failures_are_retried_with_backoff_then_left_failed() {
    let f = fixture("2026-11-30T10:10:00Z").await;
    let job = Arc::new(Fake::default());
    job.failing.store(true, Ordering::SeqCst);
    let mut scheduler = scheduler(&f, &job);
    rounds_until(&mut scheduler, "attempt 1 failed", async || {
        history(&f.state).await.len() == 2
    })
    .await;
    let runs = history(&f.state).await;
    assert_eq!(runs[0].state, RunState::Failed);
    assert_eq!(runs[0].error.as_deref(), Some("the lake was unreachable"));
    assert_eq!(runs[1].state, RunState::Queued);
    assert_eq!(runs[1].not_before, at("2026-11-30T10:10:30Z"), "30 s first");

    scheduler.round().await.unwrap();
    assert_eq!(job.calls().len(), 1, "not before its time");
    f.clock.set(at("2026-11-30T10:10:30Z"));
    rounds_until(&mut scheduler, "attempt 2 failed", async || {
        history(&f.state).await.len() == 3
    })
    .await;
    assert_eq!(
        history(&f.state).await[2].not_before,
        at("2026-11-30T10:11:30Z"),
        "then 60 s"
    );
    f.clock.set(at("2026-11-30T10:11:30Z"));
    rounds_until(&mut scheduler, "attempt 3 failed", async || {
        history(&f.state)
            .await
            .iter()
            .filter(|r| r.state == RunState::Failed)
            .count()
            == 3
    })
    .await;
    f.clock.set(at("2026-11-30T11:00:00Z"));
    scheduler.round().await.unwrap();
    assert_eq!(
        history(&f.state).await.len(),
        3,
        "retries = 2: three attempts in all"
    );
    assert_eq!(
        metric(&f.state, "imagelake_job_failures_total").as_deref(),
        Some("imagelake_job_failures_total{job=\"lake-transform\"} 3")
    );
}

#[tokio::test]
async fn two_schedulers_run_each_interval_once() {
    let f = fixture("2026-11-30T10:10:00Z").await;
    let job = Arc::new(Fake::default());
    let mut a = scheduler(&f, &job);
    let mut b = scheduler(&f, &job);
    for hour in ["10:10:00", "11:10:00", "12:10:00"] {
        f.clock.set(at(&format!("2026-11-30T{hour}Z")));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            a.round().await.unwrap();
            b.round().await.unwrap();
            let runs = history(&f.state).await;
            if runs.last().is_some_and(|r| r.state == RunState::Success) && !a.is_running() {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for call in job.calls() {
        *counts.entry(call).or_default() += 1;
    }
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    assert!(!b.is_running(), "the second replica never ran it");
}

#[tokio::test]
async fn a_backfill_is_carried_on_by_the_next_holder() {
    let f = fixture("2026-11-30T10:10:00Z").await;
    let job = Arc::new(Fake::gated());
    let mut first = scheduler(&f, &job);
    let backfill = start_backfill(
        &f.state,
        LAKE_TRANSFORM,
        "2026-11-29T00",
        "2026-11-29T05",
        Reprocess::Missing,
        2,
    )
    .await
    .unwrap();
    rounds_until(&mut first, "two backfill runs held", async || {
        job.active.load(Ordering::SeqCst) == 3
    })
    .await;
    // The holder dies mid-run (its runs never end); its lease runs out a minute later.
    std::mem::forget(first);
    let job = Arc::new(Fake::default());
    let mut next = scheduler(&f, &job);
    next.round().await.unwrap();
    assert!(job.calls().is_empty(), "the lease still holds");
    f.clock.advance(Duration::from_secs(61));
    rounds_until(&mut next, "the backfill done", async || {
        let backfill = f
            .state
            .store
            .get_backfill(backfill.id)
            .await
            .unwrap()
            .unwrap();
        backfill.state == BackfillState::Done
    })
    .await;
    let done = f
        .state
        .store
        .get_backfill(backfill.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((done.queued, done.succeeded, done.failed), (6, 6, 0));
    let runs = history(&f.state).await;
    let interrupted: Vec<&JobRun> = runs
        .iter()
        .filter(|r| {
            r.error
                .as_deref()
                .is_some_and(|e| e.starts_with("interrupted"))
        })
        .collect();
    assert_eq!(
        interrupted.len(),
        3,
        "two backfill runs and hour 09: {runs:#?}"
    );
    let hours: Vec<String> = (0..6).map(|h| format!("2026-11-29T{h:02}")).collect();
    for hour in &hours {
        assert_eq!(
            state_of(&f.state, hour).await,
            Some(RunState::Success),
            "{hour}"
        );
    }
    let period = Period::HOUR;
    assert!(period.parse(&done.to).is_ok());
}
