//! Where one source partition (a Kafka topic's partition) stands in the lake, kept beside the
//! lake at `lake/_writers/<topic>/<partition>.json` so that whichever writer holds the partition
//! next, after a rebalance, a restart or a `kill -9`, knows exactly which of its records are
//! in the lake already.
//!
//! A writer consumes a partition from its committed position and holds what it read in memory
//! until the records' hour is due. A write takes the records below a position `to` whose hour
//! is at most `hour`; those of later hours stay held. So after a write, the partition's state is
//! two facts: every record below `committed` is written, and of the records from `committed`
//! up to `held.to`, exactly those of hours up to `held.hour` are written. Each write is
//! recorded as `pending` before its files are put and applied after, and its files are named
//! from its range: a writer that finds a pending write redoes it exactly (same records, same
//! names) before anything else, so a write that died half way is completed, never doubled.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::log::Hour;

/// The state of one partition (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Every record below this offset is in the lake.
    pub committed: i64,
    /// Records from `committed` below `held.to` are in the lake when their hour is at most
    /// `held.hour`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<Held>,
    /// The newest hour this partition closed: its records that were in the partition when the
    /// hour was due are written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed: Option<Hour>,
    /// A write under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Write>,
    /// The folders (`dataset/hour`) the pending write puts files in: a redo that finds fewer
    /// (other settings) deletes the write's files from the others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_folders: Vec<(String, Hour)>,
    /// Hours already marked complete that a write added rows to: their markers are written
    /// again, then they leave this list.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub remark: BTreeSet<(String, Hour)>,
    /// Rows and files written, per dataset and hour, for the hours' markers.
    #[serde(default)]
    pub hours: BTreeMap<String, BTreeMap<Hour, Count>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub to: i64,
    pub hour: Hour,
}

/// One write: the records from `from` below `to` not written yet whose hour is at most `hour`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Write {
    pub from: i64,
    pub to: i64,
    pub hour: Hour,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    pub rows: u64,
    pub files: u64,
}

impl Manifest {
    /// Whether the record at `offset` of `hour` is in the lake.
    pub fn written(&self, offset: i64, hour: Hour) -> bool {
        offset < self.committed
            || self
                .held
                .is_some_and(|held| offset < held.to && hour <= held.hour)
    }

    /// The position a new write must reach: before it, the records a crash left behind are
    /// being read again and the held range's facts would be lost by a write that stopped short.
    pub fn must_reach(&self) -> i64 {
        let held = self.held.map_or(self.committed, |h| h.to);
        self.pending.map_or(held, |p| p.to.max(held))
    }

    /// The write of the records below `to` up to `hour`. Hours only grow: records of an hour
    /// written before stay written.
    pub fn plan(&self, to: i64, hour: Hour) -> Write {
        Write {
            from: self.committed,
            to,
            hour: self.held.map_or(hour, |h| hour.max(h.hour)),
        }
    }

    /// Records `write` as done: `first_left` is the lowest offset below `write.to` still held
    /// (of a later hour), and `counts` what was written per dataset and hour.
    pub fn apply(
        &mut self,
        write: Write,
        first_left: Option<i64>,
        counts: &BTreeMap<(String, Hour), Count>,
    ) {
        self.committed = first_left.filter(|o| *o < write.to).unwrap_or(write.to);
        self.held = (self.committed < write.to).then_some(Held {
            to: write.to,
            hour: write.hour,
        });
        self.pending = None;
        self.pending_folders.clear();
        for ((dataset, hour), count) in counts {
            let entry = self
                .hours
                .entry(dataset.clone())
                .or_default()
                .entry(*hour)
                .or_default();
            entry.rows += count.rows;
            entry.files += count.files;
        }
    }

    /// Forgets the counts of hours before `before` (deleted by the retention).
    pub fn expire(&mut self, before: Hour) {
        for hours in self.hours.values_mut() {
            hours.retain(|hour, _| *hour >= before);
        }
        self.hours.retain(|_, hours| !hours.is_empty());
        self.remark.retain(|(_, hour)| *hour >= before);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records as (offset, hour); what a write of `plan` takes and what is left.
    fn run(m: &mut Manifest, held: &mut Vec<(i64, Hour)>, to: i64, hour: Hour) -> Vec<i64> {
        let write = m.plan(to, hour);
        let (taken, left): (Vec<_>, Vec<_>) = held
            .iter()
            .partition(|(o, h)| *o >= write.from && *o < write.to && *h <= write.hour);
        let first_left = left.iter().map(|(o, _)| *o).filter(|o| *o < to).min();
        m.apply(write, first_left, &BTreeMap::new());
        *held = left;
        taken.into_iter().map(|(o, _)| o).collect()
    }

    /// Whatever the order of writes, every record is written exactly once, and a reader
    /// starting over from the manifest skips exactly the written ones.
    #[test]
    fn every_record_is_written_once() {
        let records: Vec<(i64, Hour)> = (0..40).map(|o| (o, 10 + (o * 7 % 4))).collect();
        let mut m = Manifest::default();
        let mut held = Vec::new();
        let mut written = Vec::new();
        let mut next = 0usize;
        for (consume, hour) in [
            (10, 10),
            (10, 11),
            (5, 10),
            (10, i64::MAX),
            (5, 12),
            (0, 13),
        ] {
            for r in &records[next..next + consume] {
                if !m.written(r.0, r.1) {
                    held.push(*r);
                }
            }
            next += consume;
            written.extend(run(&mut m, &mut held, next as i64, hour));
            // A reader starting over sees as unwritten exactly what is held.
            let unwritten: Vec<(i64, Hour)> = records[..next]
                .iter()
                .filter(|(o, h)| !m.written(*o, *h))
                .copied()
                .collect();
            assert_eq!(unwritten, held);
        }
        written.sort_unstable();
        let taken: Vec<i64> = records[..next]
            .iter()
            .filter(|(o, h)| m.written(*o, *h))
            .map(|r| r.0)
            .collect();
        assert_eq!(written, taken);
        written.dedup();
        assert_eq!(written.len(), taken.len());
    }

    #[test]
    fn a_write_must_reach_the_held_range() {
        let mut m = Manifest::default();
        let mut held = vec![(0, 5), (1, 6), (2, 5)];
        run(&mut m, &mut held, 3, 5);
        assert_eq!((m.committed, m.held), (1, Some(Held { to: 3, hour: 5 })));
        assert_eq!(m.must_reach(), 3);
        assert!(m.written(2, 5) && !m.written(1, 6) && !m.written(3, 5));
        m.pending = Some(m.plan(7, 6));
        assert_eq!(m.must_reach(), 7);
    }
}
