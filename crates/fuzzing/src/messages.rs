//! Messages from the queues: Kafka records with their headers, claim-checks, and GCS
//! notifications as Pub/Sub delivers them.

use std::collections::HashMap;

use imagelake_core::paths::{self, ClaimsPrefix};
use imagelake_gcp::{ObjectEvent, Received, Work, work_of};
use imagelake_kafka::message::{Body, claim_location, parse};
use imagelake_runtime::ingest::check_idempotency_key;
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};

use crate::headers_and_body;

/// The bucket the GCS targets' deployment watches.
const BUCKET: &str = "imagelake-images";

/// A Kafka record, framed as `header: value` lines, an empty line and the payload: what is
/// accepted names a customer, keeps a clean filename, and a claim-check stays under the claims
/// prefix.
pub fn kafka_message(data: &[u8]) {
    let (lines, payload) = headers_and_body(data);
    let headers = lines
        .iter()
        .fold(OwnedHeaders::new(), |headers, (name, value)| {
            headers.insert(Header {
                key: &String::from_utf8_lossy(name),
                value: *value,
            })
        });
    let message = OwnedMessage::new(
        Some(payload.to_vec()),
        None,
        "imagelake.images".to_owned(),
        Timestamp::NotAvailable,
        0,
        42,
        Some(headers),
    );
    let claims = ClaimsPrefix::default();
    let Ok(request) = parse(&message, &claims) else {
        return;
    };
    assert!(check_idempotency_key(&request.idempotency_key).is_ok());
    if let Some(name) = &request.filename {
        assert_clean_filename(name);
    }
    if let Body::Claim(object) = &request.body {
        assert_claimed(object.as_ref(), &claims);
    }
}

/// A claim-check payload alone: an object it names lies under the claims prefix.
pub fn claim_check(data: &[u8]) {
    let claims = ClaimsPrefix::default();
    if let Ok(object) = claim_location(data, &claims) {
        assert_claimed(object.as_ref(), &claims);
    }
}

/// A GCS notification, framed as `attribute: value` lines, an empty line and the message data:
/// work is only ever an original's key in the watched bucket (or re-queued ids), and a finalize
/// names the object it came from.
pub fn gcs_notification(data: &[u8]) {
    let (lines, body) = headers_and_body(data);
    let attributes: HashMap<String, String> = lines
        .iter()
        .map(|(name, value)| {
            (
                String::from_utf8_lossy(name).into_owned(),
                String::from_utf8_lossy(value.unwrap_or_default()).into_owned(),
            )
        })
        .collect();
    let message = Received {
        ack_id: "fuzz".to_owned(),
        message_id: "fuzz-1".to_owned(),
        data: body.to_vec(),
        attributes,
        delivery_attempt: Some(1),
    };
    check_work(&message);
}

/// What must hold of the work a message becomes, however it arrived (pulled or pushed).
pub(crate) fn check_work(message: &Received) {
    let event = ObjectEvent::parse(message);
    let Work::Job(job) = work_of(message, Some(BUCKET)) else {
        return;
    };
    assert_eq!(job.attempts, message.delivery_attempt.unwrap_or(1));
    if message.attributes.contains_key("imagelakeImageId") {
        return;
    }
    let event = event.expect("a job from a notification that does not parse");
    assert_eq!(event.event_type, "OBJECT_FINALIZE");
    assert_eq!(event.bucket, BUCKET);
    assert_eq!(
        paths::parse_original(&event.object),
        Some((job.customer_id, job.image_id)),
        "job from {:?}",
        event.object
    );
}

fn assert_claimed(object: &str, claims: &ClaimsPrefix) {
    let prefix = claims.to_string();
    assert!(
        object.starts_with(&prefix) && object.len() > prefix.len(),
        "claimed {object:?}"
    );
    assert!(
        object
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != ".."),
        "claimed {object:?}"
    );
    assert_eq!(
        claims.locate(object).as_ref().map(AsRef::as_ref),
        Some(object)
    );
}

pub(crate) fn assert_clean_filename(name: &str) {
    assert!(!name.is_empty() && name.chars().count() <= 255, "{name:?}");
    assert!(
        !name.contains(['/', '\\']) && !name.chars().any(char::is_control),
        "{name:?}"
    );
    assert_eq!(name, name.trim(), "{name:?}");
}
