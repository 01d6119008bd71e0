//! [`Backlog`]: how many messages wait on a Pub/Sub subscription, read from Cloud Monitoring.
//!
//! Pub/Sub's own API cannot count a subscription's messages; Cloud Monitoring can, as the metric
//! `pubsub.googleapis.com/subscription/num_undelivered_messages`, sampled every minute and
//! visible a minute or two later. So the figure is a few minutes old at best, and it exists only
//! where the deployment may read it (`roles/monitoring.viewer`). Where it cannot be read (no
//! permission, no sample yet, the emulator, which has no metrics) the answer is "unknown", never
//! 0: a backlog shown as empty when it is not is worse than none.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::{
    auth::{TokenSource, endpoint_from_env},
    error::{Error, Result},
};

const MONITORING: &str = "Cloud Monitoring";
const METRIC: &str = "pubsub.googleapis.com/subscription/num_undelivered_messages";
/// How far back a sample is looked for: samples come every minute and show up to two minutes
/// late, so five minutes always holds one for a subscription that exists.
const LOOK_BACK: Duration = Duration::from_secs(5 * 60);
/// How long an answer is reused: the metric moves once a minute, and a console refreshing every
/// few seconds in several tabs should not spend the project's Monitoring API quota.
const FRESH_FOR: Duration = Duration::from_secs(30);

/// A subscription's backlog from Cloud Monitoring (see the module docs).
pub struct Backlog {
    client: reqwest::Client,
    endpoint: String,
    tokens: TokenSource,
    project: String,
    subscription: String,
    last: Mutex<Option<(Instant, Option<u64>)>>,
}

impl Backlog {
    pub fn new(
        endpoint: impl Into<String>,
        tokens: TokenSource,
        project: impl Into<String>,
        subscription: impl Into<String>,
    ) -> Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::Credentials(e.to_string()))?;
        Ok(Self {
            client,
            endpoint: endpoint.into(),
            tokens,
            project: project.into(),
            subscription: subscription.into(),
            last: Mutex::new(None),
        })
    }

    /// Cloud Monitoring with application default credentials, or the server named by
    /// `MONITORING_EMULATOR_HOST` (Google ships no Monitoring emulator; tests serve its
    /// `timeSeries.list` answer themselves). `None` when Pub/Sub itself is the emulator
    /// (`PUBSUB_EMULATOR_HOST`), which has no metrics to read.
    pub fn from_env(project: &str, subscription: &str) -> Result<Option<Self>> {
        let pubsub_emulated = std::env::var("PUBSUB_EMULATOR_HOST").is_ok_and(|h| !h.is_empty());
        let monitoring_set = std::env::var("MONITORING_EMULATOR_HOST").is_ok_and(|h| !h.is_empty());
        if pubsub_emulated && !monitoring_set {
            return Ok(None);
        }
        let (endpoint, tokens) = endpoint_from_env(
            "MONITORING_EMULATOR_HOST",
            "https://monitoring.googleapis.com",
        )?;
        Self::new(endpoint, tokens, project, subscription).map(Some)
    }

    /// The newest sample of the subscription's undelivered messages, or `None` when there is
    /// none to read (the reason is logged).
    pub async fn undelivered(&self) -> Option<u64> {
        let mut last = self.last.lock().await;
        if let Some((at, value)) = *last
            && at.elapsed() < FRESH_FOR
        {
            return value;
        }
        let value = self.read().await.unwrap_or_else(|e| {
            tracing::warn!(subscription = %self.subscription, error = %e,
                "the subscription's backlog cannot be read from Cloud Monitoring");
            None
        });
        *last = Some((Instant::now(), value));
        value
    }

    async fn read(&self) -> Result<Option<u64>> {
        let end = chrono::Utc::now();
        let start = end - LOOK_BACK;
        let filter = format!(
            "metric.type = \"{METRIC}\" AND resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = \"{}\"",
            self.subscription
        );
        let rfc3339 =
            |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut request = self
            .client
            .get(format!(
                "{}/v3/projects/{}/timeSeries",
                self.endpoint, self.project
            ))
            .query(&[
                ("filter", filter),
                ("interval.startTime", rfc3339(start)),
                ("interval.endTime", rfc3339(end)),
            ]);
        if let Some(token) = self.tokens.token(&self.client).await? {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| Error::unreachable(MONITORING, e))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| Error::unreachable(MONITORING, e))?;
        match status {
            s if s.is_success() => {
                let answer: Value = serde_json::from_str(&text)
                    .map_err(|e| Error::malformed("timeSeries answer", e))?;
                Ok(newest_sample(&answer))
            }
            StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => {
                tracing::debug!(%status, "Cloud Monitoring will not tell the backlog: {text}");
                Ok(None)
            }
            s => Err(Error::from_status(
                MONITORING,
                s,
                "listing time series",
                text,
            )),
        }
    }
}

/// The value of the newest point of every series in a `timeSeries.list` answer (`int64Value` is
/// a string in JSON, as every 64-bit integer of Google's APIs), or `None` when it has none.
fn newest_sample(answer: &Value) -> Option<u64> {
    let points = answer
        .get("timeSeries")?
        .as_array()?
        .iter()
        .filter_map(|series| series.get("points")?.as_array())
        .flatten();
    points
        .filter_map(|point| {
            let end = point.pointer("/interval/endTime")?.as_str()?;
            let end = chrono::DateTime::parse_from_rfc3339(end).ok()?;
            let value = point.pointer("/value/int64Value")?;
            let value = match value {
                Value::String(s) => s.parse().ok()?,
                other => other.as_u64()?,
            };
            Some((end, value))
        })
        .max_by_key(|(end, _)| *end)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::newest_sample;

    #[test]
    fn the_newest_point_wins_and_no_point_is_unknown() {
        let point = |end: &str, value: Value| json!({"interval": {"startTime": end, "endTime": end}, "value": {"int64Value": value}});
        let answer = json!({"timeSeries": [{
        "metric": {"type": super::METRIC},
        "points": [
            point("2026-12-02T03:20:00Z", json!("12")),
            point("2026-12-02T03:22:00Z", json!("40")),
            point("2026-12-02T03:21:00Z", json!("7")),
        ]}]});
        assert_eq!(newest_sample(&answer), Some(40));
        assert_eq!(
            newest_sample(
                &json!({"timeSeries": [{"points": [point("2026-12-02T03:20:00Z", json!(0))]}]})
            ),
            Some(0)
        );
        assert_eq!(newest_sample(&json!({})), None, "no sample in the window");
        assert_eq!(
            newest_sample(
                &json!({"timeSeries": [{"points": [point("2026-12-02T03:20:00Z", json!("-3"))]}]})
            ),
            None
        );
        assert_eq!(
            newest_sample(&json!({"timeSeries": [{"points": [{"value": {"int64Value": "5"}}]}]})),
            None
        );
    }
}
