//! The scheduled jobs' vocabulary: data intervals, runs and backfills, as every backend keeps
//! them and every door shows them.
//!
//! A run is about a **data interval** (Airflow's term): `lake-transform` for `2026-11-30T10`
//! turns the lake's hour 10:00-11:00 into the analysts' tables, whenever it actually runs. The
//! interval is the run's key, so a re-run of the same interval replaces its output, and the run
//! history says for each interval what happened, attempt by attempt.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::Timestamp;

/// How long a job's intervals are: they start at multiples of it since the Unix epoch (UTC), so
/// an hour is 10:00-11:00 and a day 00:00-24:00.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period(Duration);

impl Period {
    pub const HOUR: Period = Period(Duration::hours(1));
    pub const DAY: Period = Period(Duration::days(1));

    /// A period of whole minutes (at least one).
    pub fn of(length: std::time::Duration) -> Self {
        let minutes = (length.as_secs() / 60).max(1);
        Self(Duration::minutes(
            i64::try_from(minutes).unwrap_or(i64::MAX / 120),
        ))
    }

    pub fn length(self) -> Duration {
        self.0
    }

    /// The interval that holds `at`.
    pub fn interval_at(self, at: Timestamp) -> Interval {
        let length = self.0.num_seconds().max(60);
        let start = at.timestamp().div_euclid(length) * length;
        Interval {
            start: Utc.timestamp_opt(start, 0).single().unwrap_or(at),
            period: self,
        }
    }

    /// The newest interval that has ended by `at`.
    pub fn last_ended(self, at: Timestamp) -> Interval {
        self.interval_at(at).previous()
    }

    /// Reads an interval back from its key: `2026-11-30` for a day, `2026-11-30T10` for an hour,
    /// `2026-11-30T10:05` for shorter periods; also any RFC 3339 time inside the interval (what
    /// Airflow's `{{ data_interval_start | ts }}` gives).
    pub fn parse(self, text: &str) -> Result<Interval, String> {
        let text = text.trim();
        let at = if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
            day.and_hms_opt(0, 0, 0).map(|t| t.and_utc())
        } else if let Ok(t) = NaiveDateTime::parse_from_str(&format!("{text}:00"), "%Y-%m-%dT%H:%M")
        {
            Some(t.and_utc())
        } else if let Ok(t) = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M") {
            Some(t.and_utc())
        } else {
            DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        };
        let at = at.ok_or_else(|| {
            format!(
                "interval {text:?}: expected {} (or an RFC 3339 time)",
                self.example()
            )
        })?;
        let interval = self.interval_at(at);
        if interval.start != at && text.len() <= 16 {
            return Err(format!(
                "interval {text:?} is inside {}, not at its start: name an interval by its key ({}) or by an RFC 3339 time",
                interval.key(),
                interval.key()
            ));
        }
        Ok(interval)
    }

    fn example(self) -> &'static str {
        if self.0 == Duration::days(1) {
            "YYYY-MM-DD"
        } else if self.0 == Duration::hours(1) {
            "YYYY-MM-DDTHH"
        } else {
            "YYYY-MM-DDTHH:MM"
        }
    }

    /// `hour`, `day` or `5 min`, for messages.
    pub fn describe(self) -> String {
        if self.0 == Duration::days(1) {
            "day".to_owned()
        } else if self.0 == Duration::hours(1) {
            "hour".to_owned()
        } else {
            format!("{} min", self.0.num_minutes())
        }
    }
}

/// One data interval of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interval {
    pub start: Timestamp,
    pub period: Period,
}

impl Interval {
    pub fn end(self) -> Timestamp {
        self.start + self.period.0
    }

    pub fn next(self) -> Self {
        Self {
            start: self.end(),
            ..self
        }
    }

    pub fn previous(self) -> Self {
        Self {
            start: self.start - self.period.0,
            ..self
        }
    }

    /// Its key: `2026-11-30` for a day, `2026-11-30T10` for an hour, `2026-11-30T10:05` for
    /// shorter periods. Keys of one period sort as their intervals do.
    pub fn key(self) -> String {
        let length = self.period.0;
        let format = if length.num_seconds() % 86_400 == 0 {
            "%Y-%m-%d"
        } else if length.num_seconds() % 3_600 == 0 {
            "%Y-%m-%dT%H"
        } else {
            "%Y-%m-%dT%H:%M"
        };
        self.start.format(format).to_string()
    }

    /// Every interval from `self` to `last`, both included, oldest first.
    pub fn through(self, last: Interval) -> impl Iterator<Item = Interval> {
        std::iter::successors(Some(self), move |i| Some(i.next())).take_while(move |i| *i <= last)
    }
}

impl std::fmt::Display for Interval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.key())
    }
}

/// Why a run was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// Its interval ended and the schedule came.
    Scheduled,
    /// Its time passed while no scheduler ran; run after, oldest first.
    Catchup,
    /// Part of a backfill.
    Backfill,
    /// Asked for (`imagelake jobs run`, `POST /v1/admin/jobs/{name}/runs`).
    Manual,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Catchup => "catchup",
            Self::Backfill => "backfill",
            Self::Manual => "manual",
        }
    }
}

/// Where one attempt of a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Waiting for its turn, its retry time, or its input (`not_before`).
    Queued,
    Running,
    Success,
    /// This attempt failed; a later attempt may follow.
    Failed,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Success => "success",
            Self::Failed => "failed",
        }
    }

    /// Whether the attempt is over.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Success | Self::Failed)
    }
}

/// One attempt of a job for one interval, as the run history keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobRun {
    pub job: String,
    /// The interval's key (`2026-11-30T10`).
    pub interval: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub trigger: Trigger,
    pub state: RunState,
    pub queued_at: DateTime<Utc>,
    /// Not started before this time (a retry's backoff, or input not there yet).
    pub not_before: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// Rows written (transforms) or things removed (retention).
    pub rows: Option<u64>,
    /// Why the attempt failed, or what a queued run waits for.
    pub error: Option<String>,
    /// The backfill it belongs to.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub backfill: Option<Uuid>,
    /// 0 for a run as it was asked for; 1, 2, ... for the retries that followed its failures.
    #[serde(default)]
    pub retry: u32,
}

impl JobRun {
    /// A first attempt, queued now.
    pub fn queued(job: &str, interval: Interval, trigger: Trigger, now: Timestamp) -> Self {
        Self {
            job: job.to_owned(),
            interval: interval.key(),
            attempt: 1,
            trigger,
            state: RunState::Queued,
            queued_at: now,
            not_before: now,
            started_at: None,
            ended_at: None,
            rows: None,
            error: None,
            backfill: None,
            retry: 0,
        }
    }

    /// How long it ran, once it ended.
    pub fn duration(&self) -> Option<Duration> {
        Some(self.ended_at? - self.started_at?)
    }
}

/// Which intervals of its range a backfill runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Reprocess {
    /// Only intervals never run.
    #[default]
    Missing,
    /// Intervals never run, and those whose last attempt failed.
    Failed,
    /// Every interval, whatever ran before.
    All,
}

impl Reprocess {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "missing" => Ok(Self::Missing),
            "failed" => Ok(Self::Failed),
            "all" => Ok(Self::All),
            other => Err(format!(
                "reprocess {other:?}: expected missing, failed or all"
            )),
        }
    }

    /// Whether an interval whose latest attempt is `last` is run again.
    pub fn includes(self, last: Option<&JobRun>) -> bool {
        match (self, last) {
            (_, None) | (Self::All, _) => true,
            (Self::Failed, Some(run)) => run.state == RunState::Failed,
            (Self::Missing, Some(_)) => false,
        }
    }
}

/// Where a backfill stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackfillState {
    Running,
    /// Every interval of the range has had its run.
    Done,
}

/// A range of intervals to run again, at most `max_active` at once, beside the schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Backfill {
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    pub job: String,
    /// First interval's key, included.
    pub from: String,
    /// Last interval's key, included.
    pub to: String,
    pub reprocess: Reprocess,
    pub max_active: u32,
    pub state: BackfillState,
    pub created_at: DateTime<Utc>,
    /// The next interval not yet queued (the range is queued oldest first).
    pub next: Option<String>,
    /// Intervals queued so far, and of them finished, failed for good.
    pub queued: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub finished_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn keys_name_the_interval_at_its_length() {
        let t = at("2026-11-30T10:17:42Z");
        assert_eq!(Period::HOUR.interval_at(t).key(), "2026-11-30T10");
        assert_eq!(Period::DAY.interval_at(t).key(), "2026-11-30");
        let five = Period::of(std::time::Duration::from_secs(300));
        assert_eq!(five.interval_at(t).key(), "2026-11-30T10:15");
        assert_eq!(Period::HOUR.last_ended(t).key(), "2026-11-30T09");
    }

    #[test]
    fn keys_and_airflow_times_parse_back() {
        let hour = Period::HOUR.parse("2026-11-30T10").unwrap();
        assert_eq!(hour.start, at("2026-11-30T10:00:00Z"));
        assert_eq!(hour.end(), at("2026-11-30T11:00:00Z"));
        let airflow = Period::HOUR.parse("2026-11-30T10:00:00+00:00").unwrap();
        assert_eq!(airflow, hour);
        assert_eq!(
            Period::DAY.parse("2026-11-30").unwrap().start,
            at("2026-11-30T00:00:00Z")
        );
        let misaligned = Period::DAY.parse("2026-11-30T10").unwrap_err();
        assert!(
            misaligned.contains("inside 2026-11-30, not at its start"),
            "{misaligned}"
        );
        assert!(Period::HOUR.parse("yesterday").is_err());
    }

    #[test]
    fn ranges_run_oldest_first_and_include_both_ends() {
        let from = Period::HOUR.parse("2026-11-30T22").unwrap();
        let to = Period::HOUR.parse("2026-12-01T01").unwrap();
        let keys: Vec<String> = from.through(to).map(Interval::key).collect();
        assert_eq!(
            keys,
            [
                "2026-11-30T22",
                "2026-11-30T23",
                "2026-12-01T00",
                "2026-12-01T01"
            ]
        );
    }

    #[test]
    fn reprocess_policies_choose_intervals() {
        let now = at("2026-11-30T10:00:00Z");
        let mut run = JobRun::queued("j", Period::HOUR.interval_at(now), Trigger::Scheduled, now);
        run.state = RunState::Failed;
        assert!(Reprocess::Failed.includes(Some(&run)));
        assert!(!Reprocess::Missing.includes(Some(&run)));
        run.state = RunState::Success;
        assert!(!Reprocess::Failed.includes(Some(&run)));
        assert!(Reprocess::All.includes(Some(&run)));
        assert!(Reprocess::Missing.includes(None));
    }
}
