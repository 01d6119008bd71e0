//! The run history and backfills ([`RunStore`](crate::RunStore)), the same on every backend.

use imagelake_core::jobs::{Backfill, BackfillState, JobRun, Period, Reprocess, RunState, Trigger};
use uuid::Uuid;

use super::{secs, t0};
use crate::{MetadataStore, RunCursor};

fn run(job: &str, hour: i64, attempt: u32, state: RunState) -> JobRun {
    let interval = Period::HOUR.interval_at(t0() + chrono::Duration::hours(hour));
    let mut run = JobRun::queued(job, interval, Trigger::Scheduled, t0() + secs(hour * 3600));
    run.attempt = attempt;
    run.state = state;
    if state.is_final() {
        run.started_at = Some(run.queued_at + secs(1));
        run.ended_at = Some(run.queued_at + secs(2));
        run.rows = Some(42);
    }
    if state == RunState::Failed {
        run.error = Some("the lake was unreachable".to_owned());
    }
    run
}

pub async fn run_history_pages_newest_first(store: &dyn MetadataStore) {
    for hour in 0..3 {
        store
            .put_run(&run("lake-transform", hour, 1, RunState::Failed))
            .await
            .unwrap();
        store
            .put_run(&run("lake-transform", hour, 2, RunState::Success))
            .await
            .unwrap();
    }
    store
        .put_run(&run("lake-retention", 0, 1, RunState::Success))
        .await
        .unwrap();

    let first = store.recent_runs("lake-transform", None, 4).await.unwrap();
    let seen: Vec<(String, u32)> = first
        .iter()
        .map(|r| (r.interval.clone(), r.attempt))
        .collect();
    let hour = |h: i64| {
        Period::HOUR
            .interval_at(t0() + chrono::Duration::hours(h))
            .key()
    };
    assert_eq!(
        seen,
        [(hour(2), 2), (hour(2), 1), (hour(1), 2), (hour(1), 1)]
    );
    assert_eq!(first[0], run("lake-transform", 2, 2, RunState::Success));
    let last = first.last().unwrap();
    let cursor = RunCursor {
        interval: last.interval.clone(),
        attempt: last.attempt,
    };
    let rest = store
        .recent_runs("lake-transform", Some(&cursor), 4)
        .await
        .unwrap();
    assert_eq!(rest.len(), 2, "the page after the cursor: {rest:?}");
    assert!(rest.iter().all(|r| r.interval == hour(0)));

    let between = store
        .runs_between("lake-transform", &hour(1), &hour(2))
        .await
        .unwrap();
    assert_eq!(
        between.len(),
        4,
        "both ends included, by interval then attempt"
    );
    assert_eq!(
        (between[0].interval.clone(), between[0].attempt),
        (hour(1), 1)
    );
    assert!(
        store
            .runs_between("lake-retention", &hour(1), &hour(2))
            .await
            .unwrap()
            .is_empty(),
        "runs are by job"
    );
}

pub async fn open_runs_are_listed_until_they_end(store: &dyn MetadataStore) {
    let mut queued = run("image-retention", 0, 1, RunState::Queued);
    store.put_run(&queued).await.unwrap();
    store
        .put_run(&run("image-retention", 1, 1, RunState::Running))
        .await
        .unwrap();
    store
        .put_run(&run("image-retention", 2, 1, RunState::Success))
        .await
        .unwrap();
    let open = store.open_runs("image-retention").await.unwrap();
    assert_eq!(open.len(), 2, "{open:?}");
    assert_eq!(open[0], queued);

    queued.state = RunState::Success;
    queued.rows = Some(7);
    store.put_run(&queued).await.unwrap();
    let open = store.open_runs("image-retention").await.unwrap();
    assert_eq!(open.len(), 1, "a rewritten attempt replaces the old one");
    assert_eq!(open[0].state, RunState::Running);

    let all = store.runs_since(t0()).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].rows, Some(7));
    assert_eq!(store.runs_since(t0() + secs(3600)).await.unwrap().len(), 2);
}

pub async fn backfills_round_trip_and_age_out(store: &dyn MetadataStore) {
    let backfill = |job: &str, created: i64| Backfill {
        id: Uuid::now_v7(),
        job: job.to_owned(),
        from: "2026-11-23T00".to_owned(),
        to: "2026-11-29T23".to_owned(),
        reprocess: Reprocess::Failed,
        max_active: 2,
        state: BackfillState::Running,
        created_at: t0() + secs(created),
        next: Some("2026-11-23T00".to_owned()),
        queued: 0,
        succeeded: 0,
        failed: 0,
        finished_at: None,
    };
    let older = backfill("lake-transform", 0);
    let mut newer = backfill("lake-transform", 60);
    store.put_backfill(&older).await.unwrap();
    store.put_backfill(&newer).await.unwrap();
    store
        .put_backfill(&backfill("lake-retention", 30))
        .await
        .unwrap();

    newer.queued = 5;
    newer.next = Some("2026-11-23T05".to_owned());
    store.put_backfill(&newer).await.unwrap();
    assert_eq!(
        store.get_backfill(newer.id).await.unwrap(),
        Some(newer.clone())
    );
    assert_eq!(store.get_backfill(Uuid::now_v7()).await.unwrap(), None);
    let listed = store.backfills("lake-transform").await.unwrap();
    assert_eq!(
        listed,
        [newer.clone(), older.clone()],
        "newest first, by job"
    );

    store
        .put_run(&run("lake-transform", 0, 1, RunState::Success))
        .await
        .unwrap();
    store
        .put_run(&run("lake-transform", 2, 1, RunState::Success))
        .await
        .unwrap();
    let purged = store.purge_runs(t0() + secs(45)).await.unwrap();
    assert_eq!(purged, 3, "one run and two backfills were older");
    assert_eq!(store.backfills("lake-transform").await.unwrap(), [newer]);
    assert_eq!(store.runs_since(t0()).await.unwrap().len(), 1);
}
