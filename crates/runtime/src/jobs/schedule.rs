//! When a job fires: a cron expression in UTC (croner), or every so often (the sweep's
//! `sweep_interval`, which cron cannot always say).

use std::{str::FromStr, time::Duration};

use chrono::{DateTime, Utc};
use croner::Cron;
use imagelake_core::jobs::Period;

#[derive(Debug, Clone)]
pub enum Schedule {
    Cron(Box<Cron>),
    /// At every multiple of this since the Unix epoch.
    Every(Duration),
}

impl Schedule {
    /// Parses a cron expression of five fields, or six with seconds first.
    pub fn cron(text: &str) -> Result<Self, String> {
        let cron = Cron::from_str(text.trim())
            .map_err(|e| format!("schedule {text:?} is not a cron expression: {e}"))?;
        Ok(Self::Cron(Box::new(cron)))
    }

    /// The newest firing at or before `now`.
    pub fn last_fire(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Cron(cron) => cron.find_previous_occurrence(&now, true).ok(),
            Self::Every(every) => {
                let every = every.as_secs().max(1) as i64;
                let at = now.timestamp().div_euclid(every) * every;
                DateTime::from_timestamp(at, 0)
            }
        }
    }

    /// The first firing after `now`.
    pub fn next_fire(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Cron(cron) => cron.find_next_occurrence(&now, false).ok(),
            Self::Every(every) => {
                let every = every.as_secs().max(1) as i64;
                let at = (now.timestamp().div_euclid(every) + 1) * every;
                DateTime::from_timestamp(at, 0)
            }
        }
    }

    /// The interval length of a job that covers the time since its last firing (the sweep):
    /// the schedule's own step, at least a minute.
    pub fn period(&self) -> Period {
        match self {
            Self::Every(every) => Period::of(*every),
            Self::Cron(_) => {
                let start = DateTime::<Utc>::UNIX_EPOCH;
                let gap = self
                    .next_fire(start)
                    .zip(self.next_fire(start).and_then(|t| self.next_fire(t)))
                    .and_then(|(a, b)| (b - a).to_std().ok())
                    .unwrap_or(Duration::from_secs(3600));
                Period::of(gap)
            }
        }
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cron(cron) => f.write_str(cron.as_str()),
            Self::Every(every) => {
                write!(
                    f,
                    "every {}",
                    imagelake_core::duration::HumanDuration(*every)
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn cron_fires_in_utc() {
        let hourly = Schedule::cron("10 * * * *").unwrap();
        let now = at("2026-11-30T11:09:59Z");
        assert_eq!(hourly.last_fire(now), Some(at("2026-11-30T10:10:00Z")));
        assert_eq!(hourly.next_fire(now), Some(at("2026-11-30T11:10:00Z")));
        assert_eq!(
            hourly.last_fire(at("2026-11-30T11:10:00Z")),
            Some(at("2026-11-30T11:10:00Z")),
            "a firing counts at its instant"
        );
        assert_eq!(hourly.period(), Period::HOUR);
    }

    #[test]
    fn every_fires_at_multiples() {
        let sweep = Schedule::Every(Duration::from_secs(300));
        let now = at("2026-11-30T11:07:00Z");
        assert_eq!(sweep.last_fire(now), Some(at("2026-11-30T11:05:00Z")));
        assert_eq!(sweep.next_fire(now), Some(at("2026-11-30T11:10:00Z")));
        assert_eq!(sweep.period().length(), chrono::Duration::minutes(5));
        assert_eq!(sweep.to_string(), "every 5m");
    }

    #[test]
    fn bad_expressions_are_refused() {
        let error = Schedule::cron("every hour").unwrap_err();
        assert!(error.contains("not a cron expression"), "{error}");
    }
}
