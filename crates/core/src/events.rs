//! Lifecycle events, schema version 1: one event for each change of an image or a customer, the
//! raw material of the data lake.
//!
//! An event's id is derived from what changed, never drawn at random: the same change seen twice
//! (a retried write, a publish repeated after a crash) has the same `event_id`, so the lake can
//! deduplicate on it. The `revision` that enters the id is what distinguishes two real changes of
//! one entity: the upload time for `image.received`, the processing time and generation for
//! `image.processed` and `image.failed` (an overwrite is processed again, a new event), the
//! update time for `customer.updated`; the terminal events happen once per entity.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{
    CustomerId, ErrorCode, ImageId, Timestamp,
    clock::to_micros,
    records::{Customer, Image, ImageStatus, Source},
};

/// Bumped on any change a reader must know about; readers keep every version they ever read.
pub const SCHEMA_VERSION: u32 = 1;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "image.received")]
    ImageReceived,
    #[serde(rename = "image.processed")]
    ImageProcessed,
    #[serde(rename = "image.failed")]
    ImageFailed,
    /// Deleted by its customer, or with the customer.
    #[serde(rename = "image.deleted")]
    ImageDeleted,
    /// Deleted by the retention sweeper.
    #[serde(rename = "image.expired")]
    ImageExpired,
    #[serde(rename = "customer.created")]
    CustomerCreated,
    #[serde(rename = "customer.updated")]
    CustomerUpdated,
    #[serde(rename = "customer.deleted")]
    CustomerDeleted,
    /// An upload answered with an image the customer already had: `image_id` is that image.
    #[serde(rename = "image.duplicate")]
    ImageDuplicate,
    /// An upload refused (`data`: `code`, `bytes`, `source`, `customer_id`); nothing was kept.
    #[serde(rename = "upload.refused")]
    UploadRefused,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ImageReceived => "image.received",
            Self::ImageProcessed => "image.processed",
            Self::ImageFailed => "image.failed",
            Self::ImageDeleted => "image.deleted",
            Self::ImageExpired => "image.expired",
            Self::CustomerCreated => "customer.created",
            Self::CustomerUpdated => "customer.updated",
            Self::CustomerDeleted => "customer.deleted",
            Self::ImageDuplicate => "image.duplicate",
            Self::UploadRefused => "upload.refused",
        }
    }
}

impl EventType {
    /// The event of an update that leaves an image in `status`; other updates (a record put back
    /// to waiting) are no lifecycle change.
    pub fn settled_as(status: ImageStatus) -> Option<Self> {
        match status {
            ImageStatus::Processed => Some(Self::ImageProcessed),
            ImageStatus::Failed => Some(Self::ImageFailed),
            ImageStatus::PendingUpload | ImageStatus::Received => None,
        }
    }
}

/// One event as it is kept and published (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub schema_version: u32,
    pub event_id: Uuid,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub occurred_at: Timestamp,
    pub customer_id: CustomerId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_id: Option<ImageId>,
    /// The door of the upload an image event is about (`api`, `kafka`, `direct`); absent on
    /// customer events and on images recorded before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// The entity after the change: the image record, or the customer without its keys; for
    /// `upload.refused`, what was refused.
    pub data: Value,
}

impl Event {
    /// An image event; `image` is the record after the change.
    pub fn image(event_type: EventType, image: &Image, occurred_at: Timestamp) -> Self {
        let revision = match event_type {
            EventType::ImageReceived => to_micros(image.uploaded_at),
            EventType::ImageProcessed | EventType::ImageFailed => {
                let processed = image.processed_at.map_or(0, to_micros);
                processed ^ image.generation.unwrap_or(0).rotate_left(32)
            }
            _ => 0,
        };
        Self {
            schema_version: SCHEMA_VERSION,
            event_id: event_id(event_type, &image.id.to_string(), revision),
            event_type,
            occurred_at,
            customer_id: image.customer_id,
            image_id: Some(image.id),
            source: image.source,
            data: serde_json::to_value(image).unwrap_or(Value::Null),
        }
    }

    /// An upload through `source` answered with `existing`, which the customer already had.
    /// `delivery` names the delivery when it can come again (a stream message's position), so
    /// a redelivery is the same event; otherwise each answer is an event of its own.
    pub fn duplicate(
        existing: &Image,
        source: Source,
        delivery: Option<&str>,
        occurred_at: Timestamp,
    ) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            event_id: occurrence_id(EventType::ImageDuplicate, delivery),
            event_type: EventType::ImageDuplicate,
            occurred_at,
            customer_id: existing.customer_id,
            image_id: Some(existing.id),
            source: Some(source),
            data: serde_json::to_value(existing).unwrap_or(Value::Null),
        }
    }

    /// An upload of `bytes` through `source` refused with `code` (`delivery` as in
    /// [`duplicate`](Self::duplicate)).
    pub fn refused(
        customer: CustomerId,
        source: Source,
        code: ErrorCode,
        bytes: u64,
        delivery: Option<&str>,
        occurred_at: Timestamp,
    ) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            event_id: occurrence_id(EventType::UploadRefused, delivery),
            event_type: EventType::UploadRefused,
            occurred_at,
            customer_id: customer,
            image_id: None,
            source: Some(source),
            data: serde_json::json!({
                "code": code.as_str(),
                "bytes": bytes,
                "source": source.as_str(),
                "customer_id": customer,
            }),
        }
    }

    /// A customer event; `customer` is the record after the change.
    pub fn customer(event_type: EventType, customer: &Customer, occurred_at: Timestamp) -> Self {
        let revision = match event_type {
            EventType::CustomerCreated => to_micros(customer.created_at),
            EventType::CustomerUpdated => to_micros(customer.updated_at),
            _ => 0,
        };
        Self {
            schema_version: SCHEMA_VERSION,
            event_id: event_id(event_type, &customer.id.to_string(), revision),
            event_type,
            occurred_at,
            customer_id: customer.id,
            image_id: None,
            source: None,
            data: serde_json::to_value(customer).unwrap_or(Value::Null),
        }
    }
}

/// The id of something that happened without changing an entity: from the delivery that can
/// come again, or new (UUIDv7) when it cannot.
fn occurrence_id(event_type: EventType, delivery: Option<&str>) -> Uuid {
    match delivery {
        Some(delivery) => event_id(event_type, delivery, 0),
        None => Uuid::now_v7(),
    }
}

/// A UUIDv8 from the type, the entity and the revision of the change.
fn event_id(event_type: EventType, entity: &str, revision: i64) -> Uuid {
    let digest = Sha256::digest(format!("{}|{entity}|{revision}", event_type.as_str()));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uuid::new_v8(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> Image {
        let at: Timestamp = "2026-11-24T10:00:00.123456Z".parse().unwrap();
        Image {
            id: ImageId::new(),
            customer_id: CustomerId::new(),
            status: ImageStatus::Received,
            bytes: 10,
            sha256: "00".repeat(32),
            content_type: "image/jpeg".into(),
            filename: None,
            uploaded_at: at,
            expires_at: at + chrono::Duration::days(7),
            facts: None,
            error: None,
            processed_at: None,
            generation: None,
            source: None,
        }
    }

    #[test]
    fn the_same_change_has_the_same_id_and_another_change_another() {
        let mut img = image();
        let now = img.uploaded_at;
        let received = Event::image(EventType::ImageReceived, &img, now);
        let later = now + chrono::Duration::seconds(5);
        assert_eq!(
            received.event_id,
            Event::image(EventType::ImageReceived, &img, later).event_id,
            "seen again later, still the same change"
        );
        img.processed_at = Some(later);
        img.generation = Some(7);
        let processed = Event::image(EventType::ImageProcessed, &img, later);
        assert_ne!(processed.event_id, received.event_id);
        img.generation = Some(8);
        let overwrite = Event::image(EventType::ImageProcessed, &img, later);
        assert_ne!(
            overwrite.event_id, processed.event_id,
            "a new generation is a new change"
        );
        let other = Event::image(EventType::ImageReceived, &image(), now);
        assert_ne!(other.event_id, received.event_id);
    }

    #[test]
    fn events_serialise_with_their_version_and_type() {
        let img = image();
        let event = Event::image(EventType::ImageExpired, &img, img.expires_at);
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["schema_version"], 1);
        assert_eq!(json["type"], "image.expired");
        assert_eq!(json["image_id"], img.id.to_string());
        assert_eq!(json["data"]["sha256"], img.sha256);
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
    }
}
