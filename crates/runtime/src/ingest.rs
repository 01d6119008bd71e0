//! Accepting one image: the path every upload takes (single, multipart, and later the Kafka
//! stream), so each source gets the same checks, deduplication and durability.
//!
//! The order is what makes an acknowledged upload survive a crash: the original is written to the
//! object store first, then the record, its idempotency key and its processing job are committed
//! in one metadata transaction, and only then does the client get `201`. A crash before the commit
//! leaves at most an orphan object (never a record without bytes); a crash after it leaves work
//! on the queue that the next worker picks up.
//!
//! With work from bucket notifications (GCP), the order is the same but the record is written
//! without a job: the object's `OBJECT_FINALIZE` notification is the job. It can reach a worker
//! before the record is committed; the worker then waits for the record (see `worker`), and an
//! original whose record never comes (the API died in between) is removed as abandoned.

use bytes::Bytes;
use imagelake_core::{
    CustomerId, ErrorCode, ImageId,
    events::Event,
    paths,
    records::{Image, ImageStatus, Source},
};
use imagelake_imaging::ImagingError;
use imagelake_metadata::{IdempotencyRecord, InsertOutcome, NewImage};
use object_store::{
    Attribute, Attributes, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    path::Path as ObjectPath,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{error::Error, state::AppState};

/// One upload as received.
pub struct Upload {
    pub customer: CustomerId,
    pub bytes: Bytes,
    pub filename: Option<String>,
    pub idempotency_key: Option<String>,
    /// The door it came through.
    pub source: Source,
    /// The delivery, when it can come again (a stream message's position): a redelivery's
    /// `image.duplicate` or `upload.refused` is then the same event.
    pub delivery: Option<String>,
}

/// Who asked what, as idempotency keys compare requests.
struct Identity {
    customer: CustomerId,
    key: Option<String>,
    /// SHA-256 of the body's hash and the filename: the same key with another request is a
    /// conflict.
    hash: String,
}

/// What became of an accepted upload.
#[derive(Debug, Clone, PartialEq)]
pub enum Accepted {
    /// Stored and recorded; processing follows.
    Created(Box<Image>),
    /// The customer already has these bytes, live: this is that image, and nothing was stored.
    Duplicate(Box<Image>),
    /// The idempotency key was used before for the same request: its first answer, given again.
    Replayed(Replay),
}

/// The first answer given to an idempotency key, exactly as it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    /// `201` (it created the image) or `200` (it was a duplicate).
    pub status: u16,
    /// The JSON body, as first sent.
    pub body: String,
}

impl Replay {
    /// The image the first answer named.
    pub fn image_id(&self) -> Option<ImageId> {
        let body: Value = serde_json::from_str(&self.body).ok()?;
        body["id"].as_str()?.parse().ok()
    }
}

impl Accepted {
    /// The HTTP status of the answer: `201` created, `200` duplicate, or the first answer's.
    pub fn status(&self) -> u16 {
        match self {
            Self::Created(_) => 201,
            Self::Duplicate(_) => 200,
            Self::Replayed(replay) => replay.status,
        }
    }

    /// The JSON body of the answer.
    pub fn body(&self) -> Value {
        match self {
            Self::Created(image) => image_body(image, false),
            Self::Duplicate(image) => image_body(image, true),
            Self::Replayed(replay) => serde_json::from_str(&replay.body).unwrap_or_default(),
        }
    }

    /// The image the answer names.
    pub fn image_id(&self) -> Option<ImageId> {
        match self {
            Self::Created(image) | Self::Duplicate(image) => Some(image.id),
            Self::Replayed(replay) => replay.image_id(),
        }
    }
}

/// The JSON of an image as upload answers show it.
pub fn image_body(image: &Image, duplicate: bool) -> Value {
    let mut body = serde_json::to_value(image).unwrap_or_default();
    body["duplicate"] = Value::Bool(duplicate);
    body
}

/// Keeps the last path component of a client's filename, without control characters and
/// without the invisible and bidirectional formatting characters that make a name display as
/// something else (`\u{202E}gpj.exe` shows as `exe.jpg`), at most 255 characters. The name is
/// metadata only; it never reaches a storage path.
pub fn clean_filename(raw: &str) -> Option<String> {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base
        .chars()
        .filter(|c| !c.is_control() && !is_invisible_format(*c))
        .take(255)
        .collect();
    let cleaned = cleaned.trim();
    (!cleaned.is_empty() && cleaned != "." && cleaned != "..").then(|| cleaned.to_owned())
}

/// Bidirectional controls, zero-width and other invisible formatting characters, and line and
/// paragraph separators. The zero-width joiner and non-joiner stay: scripts and emoji need
/// them, and they reorder nothing.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180E}'
            | '\u{200B}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{2800}'
            | '\u{3164}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{E0000}'..='\u{E007F}'
    )
}

/// Checks an `Idempotency-Key` value.
pub fn check_idempotency_key(key: &str) -> Result<(), Error> {
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid(
            "Idempotency-Key must be 1-255 visible ASCII characters",
        ));
    }
    Ok(())
}

/// Validates, deduplicates, stores and records one image.
pub async fn accept(state: &AppState, upload: Upload) -> Result<Accepted, Error> {
    let (customer, source, size) = (upload.customer, upload.source, upload.bytes.len() as u64);
    let delivery = upload.delivery.clone();
    let outcome = take(state, upload).await;
    match &outcome {
        Ok(Accepted::Duplicate(existing)) => {
            let now = state.clock.now();
            let event = Event::duplicate(existing, source, delivery.as_deref(), now);
            note(state, &event).await;
        }
        Err(refusal) => refused(state, customer, source, refusal, size, delivery.as_deref()).await,
        Ok(_) => {}
    }
    outcome
}

/// Records `upload.refused` for an upload of `bytes` a door refused with `refusal`; a failure
/// of the system's own (`internal`) is no refusal.
pub async fn refused(
    state: &AppState,
    customer: CustomerId,
    source: Source,
    refusal: &Error,
    bytes: u64,
    delivery: Option<&str>,
) {
    if refusal.code == ErrorCode::Internal {
        return;
    }
    let now = state.clock.now();
    let event = Event::refused(customer, source, refusal.code, bytes, delivery, now);
    note(state, &event).await;
}

/// Records an event that changes nothing; the answer does not wait on it failing.
async fn note(state: &AppState, event: &Event) {
    if let Err(e) = state.store.record_event(event).await {
        tracing::warn!(error = %e, event = event.event_type.as_str(), "event not recorded");
    }
}

/// Accepts an upload: stores its bytes and records it, or finds it a duplicate or a replay.
async fn take(state: &AppState, upload: Upload) -> Result<Accepted, Error> {
    if upload.bytes.is_empty() {
        return Err(Error::invalid(
            "the request body is empty; send the image bytes",
        ));
    }
    let sha256 = hex::encode(Sha256::digest(&upload.bytes));
    let request = Identity {
        customer: upload.customer,
        key: upload.idempotency_key.clone(),
        hash: hex::encode(Sha256::digest(format!(
            "{sha256}/{}",
            upload.filename.as_deref().unwrap_or("")
        ))),
    };
    if let Some(key) = &request.key {
        check_idempotency_key(key)?;
        if let Some(previous) = state.store.find_idempotent(upload.customer, key).await? {
            return replay(state, previous, &request.hash);
        }
    }
    let format = match imagelake_imaging::inspect(&upload.bytes, &state.settings.imaging_options())
    {
        Ok(inspection) => inspection.format,
        // The bytes claim a supported format but the header is broken: accept them and let
        // processing record the reason, so the customer sees one place for every outcome.
        Err(ImagingError::Corrupt(_)) => imagelake_imaging::sniff(&upload.bytes)?,
        Err(refused) => return Err(refused.into()),
    };
    let now = state.clock.now();
    // Looking for a duplicate before writing saves writing its bytes; the insert checks again
    // atomically (see `Capabilities::precheck_duplicates`).
    if state.capabilities.precheck_duplicates
        && let Some(existing) = state
            .store
            .find_live_duplicate(upload.customer, &sha256, now)
            .await?
    {
        return duplicate(state, &request, &existing).await;
    }
    let image = Image {
        sha256,
        ..new_image(
            state,
            upload.customer,
            ImageStatus::Received,
            format,
            upload.bytes.len() as u64,
            upload.filename,
            upload.source,
        )
    };
    let location = paths::original(image.customer_id, image.id);
    state
        .objects
        .put_opts(
            &location,
            PutPayload::from_bytes(upload.bytes.clone()),
            original_options(state, &image),
        )
        .await?;
    let idempotency = request.key.clone().map(|key| IdempotencyRecord {
        key,
        request_hash: request.hash.clone(),
        status: 201,
        body: image_body(&image, false).to_string(),
        created_at: now,
    });
    let outcome = state
        .store
        .insert_image(
            &NewImage {
                image: image.clone(),
                idempotency,
            },
            state.capabilities.enqueue_with_record,
        )
        .await;
    match outcome {
        Ok(InsertOutcome::Created) => {
            state.metrics.upload("created");
            state.metrics.upload_bytes.inc_by(image.bytes);
            state.work_ready.notify_one();
            Ok(Accepted::Created(Box::new(image)))
        }
        Ok(InsertOutcome::Duplicate(existing)) => {
            discard(state, &location).await;
            duplicate(state, &request, &existing).await
        }
        Ok(InsertOutcome::Replay(previous)) => {
            discard(state, &location).await;
            replay(state, previous, &request.hash)
        }
        Err(e) => {
            discard(state, &location).await;
            Err(e.into())
        }
    }
}

/// Create-only, so an id can never overwrite bytes; on GCS the object also names its customer
/// and image in its custom metadata, which its notification carries to the worker.
fn original_options(state: &AppState, image: &Image) -> PutOptions {
    let mut attributes = Attributes::new();
    if state.capabilities.tag_originals {
        attributes.insert(Attribute::ContentType, image.content_type.clone().into());
        for (name, value) in [
            ("customer-id", image.customer_id.to_string()),
            ("image-id", image.id.to_string()),
        ] {
            attributes.insert(Attribute::Metadata(name.into()), value.into());
        }
    }
    PutOptions {
        mode: PutMode::Create,
        attributes,
        ..PutOptions::default()
    }
}

/// The answer to bytes the customer already has: `200` with the existing image. With an
/// idempotency key, the answer is recorded as the key's first answer, unless a concurrent
/// request with the key answered first: then that answer is given, so one key never gets two.
async fn duplicate(
    state: &AppState,
    request: &Identity,
    existing: &Image,
) -> Result<Accepted, Error> {
    if let Some(key) = &request.key {
        let record = IdempotencyRecord {
            key: key.clone(),
            request_hash: request.hash.clone(),
            status: 200,
            body: image_body(existing, true).to_string(),
            created_at: state.clock.now(),
        };
        if let Some(first) = state
            .store
            .remember_answer(request.customer, &record)
            .await?
        {
            return replay(state, first, &request.hash);
        }
    }
    state.metrics.upload("duplicate");
    Ok(Accepted::Duplicate(Box::new(existing.clone())))
}

fn replay(
    state: &AppState,
    previous: IdempotencyRecord,
    request_hash: &str,
) -> Result<Accepted, Error> {
    if previous.request_hash != request_hash {
        return Err(Error::conflict(
            "this Idempotency-Key was used with a different request body",
        ));
    }
    Ok(replayed(state, &previous))
}

/// The answer recorded with an idempotency key, given again.
pub fn replayed(state: &AppState, previous: &IdempotencyRecord) -> Accepted {
    state.metrics.upload("replay");
    Accepted::Replayed(Replay {
        status: previous.status,
        body: previous.body.clone(),
    })
}

/// The record of a new upload, as every door makes it: a new id, received now, kept for the
/// retention window. Its `sha256` is known once the bytes are (empty until then).
pub(crate) fn new_image(
    state: &AppState,
    customer: CustomerId,
    status: ImageStatus,
    format: imagelake_imaging::Format,
    bytes: u64,
    filename: Option<String>,
    source: Source,
) -> Image {
    let now = state.clock.now();
    let retention =
        chrono::Duration::from_std(state.settings.retention.0).unwrap_or(chrono::Duration::days(7));
    Image {
        id: ImageId::new(),
        customer_id: customer,
        status,
        bytes,
        sha256: String::new(),
        content_type: format.content_type().to_owned(),
        filename,
        uploaded_at: now,
        expires_at: now + retention,
        facts: None,
        error: None,
        processed_at: None,
        generation: None,
        source: Some(source),
    }
}

/// Removes an object written for an upload that did not become a record.
async fn discard(state: &AppState, location: &ObjectPath) {
    if let Err(e) = state.objects.delete(location).await {
        tracing::warn!(%location, error = %e, "could not remove an unused original; the sweeper leaves it");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames_lose_their_paths() {
        assert_eq!(clean_filename("../../x").as_deref(), Some("x"));
        assert_eq!(
            clean_filename("C:\\photos\\cat.jpg").as_deref(),
            Some("cat.jpg")
        );
        assert_eq!(clean_filename("a\u{0}b\n.png").as_deref(), Some("ab.png"));
        assert_eq!(clean_filename("../"), None);
        assert_eq!(
            clean_filename("\u{202E}gpj.exe").as_deref(),
            Some("gpj.exe"),
            "a right-to-left override is dropped"
        );
        assert_eq!(
            clean_filename("a\u{200B}\u{2066}b\u{2069}\u{FEFF}.png").as_deref(),
            Some("ab.png")
        );
        assert_eq!(clean_filename("\u{200F}\u{202C}"), None);
        assert_eq!(
            clean_filename("a\u{2028}b\u{2029}c\u{034F}.jpg").as_deref(),
            Some("abc.jpg")
        );
        assert_eq!(
            clean_filename("👨\u{200D}👩.jpg").as_deref(),
            Some("👨\u{200D}👩.jpg")
        );
        assert_eq!(clean_filename(".."), None);
    }

    #[test]
    fn idempotency_keys_are_checked() {
        assert!(check_idempotency_key("order-42").is_ok());
        assert!(check_idempotency_key("").is_err());
        assert!(check_idempotency_key("has space").is_err());
        assert!(check_idempotency_key(&"k".repeat(256)).is_err());
    }
}
