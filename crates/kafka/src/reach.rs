//! One question asked of the brokers before a command does any work: can they be reached, and does
//! the topic exist? Without it an unreachable broker makes librdkafka retry quietly for minutes.

use std::time::Duration;

use rdkafka::{
    client::{Client, ClientContext},
    types::RDKafkaErrorCode,
};

/// How long the brokers have to answer.
pub const REACH_TIMEOUT: Duration = Duration::from_secs(15);

/// Fetches the cluster's metadata (and `topic`'s, when given) within [`REACH_TIMEOUT`]. Blocks:
/// call it from a blocking context.
pub(crate) fn check<C: ClientContext>(
    client: &Client<C>,
    brokers: &str,
    topic: Option<&str>,
) -> anyhow::Result<()> {
    let metadata = client.fetch_metadata(topic, REACH_TIMEOUT).map_err(|e| {
        anyhow::anyhow!(
            "cannot reach the Kafka brokers at {brokers} within {} s: {e}",
            REACH_TIMEOUT.as_secs()
        )
    })?;
    let Some(topic) = topic else {
        return Ok(());
    };
    let found = metadata.topics().iter().find(|t| t.name() == topic);
    match found.map(|t| {
        (
            t.error().map(RDKafkaErrorCode::from),
            t.partitions().is_empty(),
        )
    }) {
        Some((None, false)) => Ok(()),
        Some((Some(code), _)) if code != RDKafkaErrorCode::UnknownTopicOrPartition => {
            anyhow::bail!("topic {topic} is not available: {code}")
        }
        _ => anyhow::bail!(
            "topic {topic} does not exist on {brokers}; create it with `imagelake kafka create-topics`"
        ),
    }
}
