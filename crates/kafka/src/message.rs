//! Reading one stream message: its headers, and the claim-check form for images larger than a
//! Kafka record may be.

use imagelake_core::{CustomerId, ErrorCode, paths::ClaimsPrefix};
use imagelake_runtime::Error;
use object_store::path::Path as ObjectPath;
use rdkafka::message::{Headers, Message};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `content-type` of a claim-check message, whose value is a [`Claim`].
pub const CLAIM_CONTENT_TYPE: &str = "application/vnd.imagelake.claim+json";

/// A claim-check: the image waits in the object store under the claims prefix.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    pub object: String,
}

/// What a message asks for, before any storage is touched.
#[derive(Debug)]
pub struct Request {
    pub customer: CustomerId,
    pub filename: Option<String>,
    pub idempotency_key: String,
    pub body: Body,
}

#[derive(Debug)]
pub enum Body {
    Bytes(bytes::Bytes),
    Claim(ObjectPath),
}

fn header<'a>(message: &'a impl Message, name: &str) -> Result<Option<&'a str>, Error> {
    let Some(headers) = message.headers() else {
        return Ok(None);
    };
    for h in headers.iter() {
        if h.key.eq_ignore_ascii_case(name) {
            let value = h.value.unwrap_or_default();
            return std::str::from_utf8(value)
                .map(Some)
                .map_err(|_| Error::invalid(format!("header {name} is not UTF-8")));
        }
    }
    Ok(None)
}

/// Reads a message; a refusal is what goes to the dead letters.
pub fn parse(message: &impl Message, claims_prefix: &ClaimsPrefix) -> Result<Request, Error> {
    let customer = header(message, "customer-id")?
        .ok_or_else(|| Error::invalid("the customer-id header is missing"))?;
    let customer: CustomerId = customer
        .trim()
        .parse()
        .map_err(|_| Error::invalid(format!("customer-id {customer:?} is not an id")))?;
    let idempotency_key = match header(message, "idempotency-key")? {
        Some(key) => {
            imagelake_runtime::ingest::check_idempotency_key(key)?;
            key.to_owned()
        }
        None => position_key(message.topic(), message.partition(), message.offset()),
    };
    let payload = message.payload().unwrap_or_default();
    let body = if header(message, "content-type")?
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(CLAIM_CONTENT_TYPE))
    {
        Body::Claim(claim_location(payload, claims_prefix)?)
    } else {
        Body::Bytes(bytes::Bytes::copy_from_slice(payload))
    };
    Ok(Request {
        customer,
        filename: header(message, "filename")?.and_then(imagelake_runtime::ingest::clean_filename),
        idempotency_key,
        body,
    })
}

/// The idempotency key of a message that names none: its position, `kafka:{topic}:{partition}:
/// {offset}`. A topic name may be 249 characters, which would pass the 255 a key may have; such
/// a topic is named by the first 32 hex digits of its SHA-256 instead.
pub fn position_key(topic: &str, partition: i32, offset: i64) -> String {
    let key = format!("kafka:{topic}:{partition}:{offset}");
    if key.len() <= 255 {
        return key;
    }
    let digest = hex::encode(Sha256::digest(topic.as_bytes()));
    format!("kafka:{}:{partition}:{offset}", &digest[..32])
}

/// The object a claim names, if it lies under the claims prefix and nowhere else.
pub fn claim_location(payload: &[u8], claims_prefix: &ClaimsPrefix) -> Result<ObjectPath, Error> {
    let claim: Claim = serde_json::from_slice(payload)
        .map_err(|e| Error::invalid(format!("a claim-check must be {{\"object\": KEY}}: {e}")))?;
    claims_prefix.locate(&claim.object).ok_or_else(|| {
        Error::new(
            ErrorCode::InvalidRequest,
            format!(
                "claim object {:?} is not under \"{claims_prefix}\"",
                claim.object
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_stay_under_their_prefix() {
        let claims = ClaimsPrefix::default();
        let ok = claim_location(br#"{"object": "claims/batch-1/cat.jpg"}"#, &claims).unwrap();
        assert_eq!(ok.as_ref(), "claims/batch-1/cat.jpg");
        for bad in [
            r#"{"object": "originals/c/i"}"#,
            r#"{"object": "claims/../originals/c/i"}"#,
            r#"{"object": "claims/"}"#,
            r#"{"object": "claimsx/a"}"#,
            r#"{"object": "/claims/a"}"#,
            r#"{"object": "claims//a"}"#,
            r#"{"key": "claims/a"}"#,
            "not json",
        ] {
            assert!(claim_location(bad.as_bytes(), &claims).is_err(), "{bad}");
        }
    }

    #[test]
    fn position_keys_stay_within_the_key_limit() {
        assert_eq!(position_key("images", 3, 42), "kafka:images:3:42");
        let long = "t".repeat(249);
        let key = position_key(&long, i32::MAX, i64::MAX);
        assert!(
            imagelake_runtime::ingest::check_idempotency_key(&key).is_ok(),
            "{key}"
        );
        assert_ne!(key, position_key(&"u".repeat(249), i32::MAX, i64::MAX));
    }

    /// Found by the `kafka_message` fuzz target: a header with an empty value (or a null one, as
    /// a producer may send) became an empty idempotency key instead of a refusal.
    #[test]
    fn idempotency_keys_are_checked_at_the_door() {
        use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};
        let message = |key: Option<&[u8]>| {
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "customer-id",
                    value: Some(CustomerId::new().to_string().as_bytes()),
                })
                .insert(Header {
                    key: "idempotency-key",
                    value: key,
                });
            OwnedMessage::new(
                Some(b"bytes".to_vec()),
                None,
                "t".to_owned(),
                Timestamp::NotAvailable,
                0,
                7,
                Some(headers),
            )
        };
        let claims = ClaimsPrefix::default();
        let ok = parse(&message(Some(b"order-42")), &claims).unwrap();
        assert_eq!(ok.idempotency_key, "order-42");
        for bad in [
            None,
            Some(&b""[..]),
            Some(b"has space"),
            Some(&[b'k'; 256][..]),
        ] {
            let refused = parse(&message(bad), &claims).unwrap_err();
            assert_eq!(refused.code, ErrorCode::InvalidRequest, "{bad:?}");
        }
    }
}
