//! Cloud Pub/Sub over its REST API, and the GCS notifications that travel through it.
//!
//! Unary REST `pull`, `acknowledge` and `modifyAckDeadline` over HTTP/1.1 are used, not gRPC
//! streaming pull: the Pub/Sub emulator stops delivering on a subscription after a streaming
//! client dies, and a killed worker must never wedge the others. Delivery is at least once; an
//! unacknowledged message comes back after its ack deadline, and the subscription's dead-letter
//! policy moves it aside after `max_delivery_attempts`.

use std::collections::HashMap;

use base64::{Engine, engine::general_purpose::STANDARD};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    auth::{TokenSource, endpoint_from_env},
    error::{Error, Result},
};

const PUBSUB: &str = "Pub/Sub";

/// A Pub/Sub project and how to reach it.
#[derive(Debug)]
pub struct PubSub {
    client: reqwest::Client,
    endpoint: String,
    project: String,
    tokens: TokenSource,
}

/// One delivered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// What `acknowledge` and `modify_ack_deadline` take.
    pub ack_id: String,
    pub message_id: String,
    pub data: Vec<u8>,
    pub attributes: HashMap<String, String>,
    /// 1 on first delivery; present when the subscription has a dead-letter policy.
    pub delivery_attempt: Option<u32>,
}

/// Dead-lettering for a subscription.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub topic: String,
    /// 5 to 100, as Pub/Sub allows.
    pub max_delivery_attempts: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMessage {
    #[serde(default)]
    data: String,
    #[serde(default)]
    attributes: HashMap<String, String>,
    message_id: String,
}

/// A message as a pull answer lists it and as a push subscription posts it (without `ackId`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireReceived {
    ack_id: Option<String>,
    message: WireMessage,
    delivery_attempt: Option<u32>,
}

impl TryFrom<WireReceived> for Received {
    type Error = Error;

    fn try_from(r: WireReceived) -> Result<Self> {
        Ok(Self {
            ack_id: r.ack_id.unwrap_or_default(),
            message_id: r.message.message_id,
            data: STANDARD
                .decode(r.message.data)
                .map_err(|_| Error::malformed("message", "message.data is not base64"))?,
            attributes: r.message.attributes,
            delivery_attempt: r.delivery_attempt,
        })
    }
}

impl Received {
    /// The messages of a pull answer (`receivedMessages`, absent when there are none).
    pub fn from_pull(answer: &Value) -> Result<Vec<Self>> {
        let wire: Vec<WireReceived> = match answer.get("receivedMessages") {
            Some(list) => serde_json::from_value(list.clone())
                .map_err(|e| Error::malformed("pull answer", e))?,
            None => Vec::new(),
        };
        if wire.iter().any(|r| r.ack_id.is_none()) {
            return Err(Error::malformed("pull answer", "a message without ackId"));
        }
        wire.into_iter().map(Self::try_from).collect()
    }

    /// The message of a push subscription's request body (`{"message": ..., "subscription"}`).
    pub fn from_push(body: &[u8]) -> Result<Self> {
        let wire: WireReceived =
            serde_json::from_slice(body).map_err(|e| Error::malformed("push message", e))?;
        Self::try_from(wire)
    }
}

impl PubSub {
    /// Production Pub/Sub with application default credentials, or the emulator named by
    /// `PUBSUB_EMULATOR_HOST` without credentials.
    pub fn from_env(project: impl Into<String>) -> Result<Self> {
        let (endpoint, tokens) =
            endpoint_from_env("PUBSUB_EMULATOR_HOST", "https://pubsub.googleapis.com")?;
        let client = reqwest::Client::builder()
            .build()
            .map_err(|e| Error::Credentials(e.to_string()))?;
        Ok(Self {
            client,
            endpoint,
            project: project.into(),
            tokens,
        })
    }

    fn topic_path(&self, topic: &str) -> String {
        format!("projects/{}/topics/{topic}", self.project)
    }

    fn subscription_path(&self, subscription: &str) -> String {
        format!("projects/{}/subscriptions/{subscription}", self.project)
    }

    async fn call(&self, method: Method, path: &str, body: Value) -> Result<(StatusCode, Value)> {
        let mut request = self
            .client
            .request(method, format!("{}/v1/{path}", self.endpoint))
            .json(&body);
        if let Some(token) = self.tokens.token(&self.client).await? {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| Error::unreachable(PUBSUB, e))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| Error::unreachable(PUBSUB, e))?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    async fn ok(&self, method: Method, path: &str, body: Value) -> Result<Value> {
        match self.call(method, path, body).await? {
            (status, answer) if status.is_success() => Ok(answer),
            (status, answer) => Err(Error::from_status(PUBSUB, status, path, answer)),
        }
    }

    /// Creates a topic; an existing one is fine.
    pub async fn ensure_topic(&self, topic: &str) -> Result<()> {
        match self
            .call(Method::PUT, &self.topic_path(topic), json!({}))
            .await?
        {
            (s, _) if s.is_success() || s == StatusCode::CONFLICT => Ok(()),
            (s, answer) => Err(Error::from_status(
                PUBSUB,
                s,
                &format!("creating topic {topic}"),
                answer,
            )),
        }
    }

    /// Creates a pull subscription; an existing one is fine.
    pub async fn ensure_subscription(
        &self,
        subscription: &str,
        topic: &str,
        ack_deadline_seconds: u32,
        dead_letter: Option<&DeadLetter>,
    ) -> Result<()> {
        let mut body =
            json!({"topic": self.topic_path(topic), "ackDeadlineSeconds": ack_deadline_seconds});
        if let Some(dl) = dead_letter {
            body["deadLetterPolicy"] = json!({"deadLetterTopic": self.topic_path(&dl.topic), "maxDeliveryAttempts": dl.max_delivery_attempts});
        }
        match self
            .call(Method::PUT, &self.subscription_path(subscription), body)
            .await?
        {
            (s, _) if s.is_success() || s == StatusCode::CONFLICT => Ok(()),
            (s, answer) => Err(Error::from_status(
                PUBSUB,
                s,
                &format!("creating subscription {subscription}"),
                answer,
            )),
        }
    }

    /// Publishes one message; returns its id.
    pub async fn publish(
        &self,
        topic: &str,
        data: &[u8],
        attributes: &HashMap<String, String>,
    ) -> Result<String> {
        let body = json!({"messages": [{"data": STANDARD.encode(data), "attributes": attributes}]});
        let answer = self
            .ok(
                Method::POST,
                &format!("{}:publish", self.topic_path(topic)),
                body,
            )
            .await?;
        answer
            .pointer("/messageIds/0")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| Error::malformed("publish answer", answer))
    }

    /// Up to `max` messages that are ready now (none is not an error).
    pub async fn pull(&self, subscription: &str, max: u32) -> Result<Vec<Received>> {
        let body = json!({"maxMessages": max, "returnImmediately": true});
        let answer = self
            .ok(
                Method::POST,
                &format!("{}:pull", self.subscription_path(subscription)),
                body,
            )
            .await?;
        Received::from_pull(&answer)
    }

    pub async fn acknowledge(&self, subscription: &str, ack_ids: &[String]) -> Result<()> {
        let path = format!("{}:acknowledge", self.subscription_path(subscription));
        self.ok(Method::POST, &path, json!({"ackIds": ack_ids}))
            .await
            .map(drop)
    }

    /// Extends a lease, or with 0 seconds hands the messages back for redelivery now (a nack).
    pub async fn modify_ack_deadline(
        &self,
        subscription: &str,
        ack_ids: &[String],
        seconds: u32,
    ) -> Result<()> {
        let path = format!("{}:modifyAckDeadline", self.subscription_path(subscription));
        self.ok(
            Method::POST,
            &path,
            json!({"ackIds": ack_ids, "ackDeadlineSeconds": seconds}),
        )
        .await
        .map(drop)
    }
}

/// What happened to an object, from a GCS notification (payload format `JSON_API_V1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEvent {
    /// `OBJECT_FINALIZE`, `OBJECT_DELETE`, `OBJECT_ARCHIVE` or `OBJECT_METADATA_UPDATE`.
    pub event_type: String,
    pub bucket: String,
    pub object: String,
    pub generation: i64,
    /// Set on a finalize that replaced an existing object.
    pub overwrote_generation: Option<i64>,
    /// The object's custom metadata, from the message data.
    pub metadata: HashMap<String, String>,
}

impl ObjectEvent {
    /// Reads a notification message; anything that is not one is an error to dead-letter.
    pub fn parse(message: &Received) -> Result<Self> {
        let malformed = |message: String| Error::malformed("bucket notification", message);
        let attr = |name: &str| {
            message
                .attributes
                .get(name)
                .cloned()
                .ok_or_else(|| malformed(format!("no {name}")))
        };
        if let Some(format) = message.attributes.get("payloadFormat")
            && format != "JSON_API_V1"
        {
            return Err(malformed(format!("unsupported payload format {format}")));
        }
        let generation = attr("objectGeneration")?
            .parse()
            .map_err(|_| malformed("objectGeneration is not a number".to_owned()))?;
        let overwrote_generation = message
            .attributes
            .get("overwroteGeneration")
            .and_then(|g| g.parse().ok());
        let metadata = serde_json::from_slice::<Value>(&message.data)
            .ok()
            .and_then(|v| v.get("metadata").cloned())
            .and_then(|m| serde_json::from_value(m).ok())
            .unwrap_or_default();
        Ok(Self {
            event_type: attr("eventType")?,
            bucket: attr("bucketId")?,
            object: attr("objectId")?,
            generation,
            overwrote_generation,
            metadata,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(attributes: &[(&str, &str)], data: &str) -> Received {
        Received {
            ack_id: "a".into(),
            message_id: "m".into(),
            data: data.as_bytes().to_vec(),
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            delivery_attempt: Some(1),
        }
    }

    #[test]
    fn parses_finalize_notifications() {
        let m = message(
            &[
                ("payloadFormat", "JSON_API_V1"),
                ("eventType", "OBJECT_FINALIZE"),
                ("bucketId", "images"),
                ("objectId", "originals/c/i"),
                ("objectGeneration", "1700000000000001"),
                ("overwroteGeneration", "1690000000000000"),
            ],
            r#"{"name":"originals/c/i","metadata":{"customer-id":"c"}}"#,
        );
        let event = ObjectEvent::parse(&m).unwrap();
        assert_eq!(event.event_type, "OBJECT_FINALIZE");
        assert_eq!(event.object, "originals/c/i");
        assert_eq!(event.generation, 1_700_000_000_000_001);
        assert_eq!(event.overwrote_generation, Some(1_690_000_000_000_000));
        assert_eq!(
            event.metadata.get("customer-id").map(String::as_str),
            Some("c")
        );
    }

    #[test]
    fn refuses_what_is_not_a_notification() {
        assert!(ObjectEvent::parse(&message(&[("eventType", "OBJECT_FINALIZE")], "{}")).is_err());
        let other_format = [
            ("payloadFormat", "NONE"),
            ("eventType", "x"),
            ("bucketId", "b"),
            ("objectId", "o"),
            ("objectGeneration", "1"),
        ];
        assert!(ObjectEvent::parse(&message(&other_format, "")).is_err());
    }
}
