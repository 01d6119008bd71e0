//! What librdkafka's statistics tell every consumer here: whether a broker is up, and each
//! partition's figures, for readiness and `/metrics`.

use rdkafka::{Statistics, statistics::Partition};

/// Whether any broker is up.
pub fn brokers_up(statistics: &Statistics) -> bool {
    statistics.brokers.values().any(|b| b.state == "UP")
}

/// Each real partition (not librdkafka's internal `-1`) with its topic.
pub fn partitions(statistics: &Statistics) -> impl Iterator<Item = (&str, i32, &Partition)> {
    statistics.topics.iter().flat_map(|(topic, t)| {
        t.partitions
            .iter()
            .filter(|(partition, _)| **partition >= 0)
            .map(move |(partition, p)| (topic.as_str(), *partition, p))
    })
}
