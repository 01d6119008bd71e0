//! The OpenAPI document, generated from the handlers' annotations and kept true by schemathesis
//! in the test suite (`crates/cli/tests/openapi.rs`), which calls every operation with an admin
//! token and a customer key and fails on any answer the document does not describe.
//!
//! What every operation shares is added once, by [`document`]: `401` and `429` on every
//! operation that takes a bearer token, `408` on every operation with a request body, the links
//! that tell a client (and schemathesis) where an answer's id leads, and the limits this
//! process is configured with.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use imagelake_core::records::{ErrorInfo, ExifFacts, ImageStatus, RenditionInfo};
use serde_json::{Value, json};
use utoipa::{
    OpenApi, ToSchema,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use super::{
    admin, customers, dashboards, images, jobs, keys, lake, lake_tables, ops, session, stream,
    uploads,
};
use imagelake_runtime::Settings;

#[derive(OpenApi)]
#[openapi(
    info(title = "imagelake", description = "Upload, process, keep and query images."),
    paths(
        customers::create, customers::list, customers::get_one, customers::update, customers::delete,
        customers::create_key, customers::list_keys, customers::revoke_key,
        images::upload, uploads::create, images::list, images::get_one, images::original, images::rendition, images::delete,
        lake::append, keys::create, keys::list, keys::revoke,
        admin::dead_letters, admin::retry_dead_letter, admin::tasks,
        stream::overview, stream::dead_letters, stream::redrive, lake_tables::tables,
        dashboards::list, dashboards::get_one,
        jobs::list, jobs::runs, jobs::queue, jobs::backfill, jobs::backfills,
        session::sign_in, session::get_current, session::sign_out, session::list, session::end,
        ops::healthz, ops::readyz, ops::metrics, ops::openapi,
    ),
    components(schemas(ImageRecord, ErrorBody, super::images::RenditionName)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

/// The document this process serves: the API, the push endpoint where it is enabled (it
/// answers `404` to everything otherwise, so it is not there to describe), the answers every
/// operation shares, and the limits of these settings.
pub fn document(settings: &Settings) -> Value {
    #[cfg_attr(not(any(feature = "gcp", feature = "sql")), allow(unused_mut))]
    let mut doc = ApiDoc::openapi();
    #[cfg(feature = "sql")]
    doc.merge(super::sql::SqlDoc::openapi());
    #[cfg(feature = "gcp")]
    if settings.push.enabled {
        doc.merge(super::push::PushDoc::openapi());
    }
    let mut doc = serde_json::to_value(&doc).unwrap_or_default();
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, operation) in item.iter_mut() {
                shared_answers(operation);
                links(path, method, operation);
            }
        }
    }
    let bytes = &mut doc["components"]["schemas"]["UploadRequest"]["properties"]["bytes"];
    if bytes.is_object() {
        bytes["maximum"] = settings.limits.max_body_bytes.into();
    }
    doc
}

/// `{"error": {"code", "message"}}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(serde::Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    #[schema(value_type = String, example = "not_found", pattern = "^[a-z_]+$")]
    code: String,
    message: String,
}

/// An image record: what the API answers and the metadata store keeps. The fields from
/// `width` to `renditions` appear once processing has run; `error` once it failed.
#[derive(serde::Serialize, ToSchema)]
#[schema(as = Image)]
#[allow(dead_code)]
pub struct ImageRecord {
    #[schema(format = Uuid)]
    id: String,
    #[schema(format = Uuid)]
    customer_id: String,
    status: ImageStatus,
    bytes: u64,
    /// SHA-256 of the bytes, hex; empty while a direct upload waits for its bytes.
    sha256: String,
    content_type: String,
    filename: Option<String>,
    uploaded_at: DateTime<Utc>,
    /// `uploaded_at` + retention; the image is gone after it.
    expires_at: DateTime<Utc>,
    /// Width as displayed (after EXIF orientation).
    width: Option<u32>,
    height: Option<u32>,
    format: Option<String>,
    exif: Option<ExifFacts>,
    /// 64-bit DCT perceptual hash, 16 hex digits.
    phash: Option<String>,
    /// `#rrggbb`.
    average_color: Option<String>,
    /// `thumb` and `preview`.
    renditions: Option<BTreeMap<String, RenditionInfo>>,
    error: Option<ErrorInfo>,
    processed_at: Option<DateTime<Utc>>,
    /// The door it came through: `api`, `kafka` or `direct`.
    source: Option<imagelake_core::records::Source>,
    /// In upload answers: whether the same bytes were stored already, as this image.
    duplicate: Option<bool>,
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

fn error_answer(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    })
}

/// Answers every operation of a kind can give: `401` and `429` where a bearer token is taken,
/// `408` where a body is read.
fn shared_answers(operation: &mut Value) {
    let secured = operation["security"]
        .as_array()
        .is_some_and(|s| !s.is_empty());
    let has_body = operation.get("requestBody").is_some();
    let Some(responses) = operation["responses"].as_object_mut() else {
        return;
    };
    let mut add = |status: &str, description: &str| {
        responses
            .entry(status)
            .or_insert_with(|| error_answer(description));
    };
    if secured {
        add(
            "401",
            "`unauthorized`: a missing, malformed, unknown or revoked key",
        );
        add(
            "403",
            "`forbidden`: a company key (role `ingest` or `analyst`) outside its role",
        );
        add(
            "429",
            "`rate_limited`: over the key's rate, too many failed authentications from this address, or (uploads) the key's own uploads hold its share of the upload budget; see `Retry-After`",
        );
    }
    if has_body {
        add(
            "408",
            "`request_timeout`: the body stalled or took too long; the connection is closed",
        );
    }
}

/// A link's parameters: name and runtime expression.
type LinkParameters = &'static [(&'static str, &'static str)];

/// Where an id in an answer leads: the record, its bytes, its keys and its deletion.
fn links(path: &str, method: &str, operation: &mut Value) {
    const IMAGE: LinkParameters = &[("id", "$response.body#/id")];
    const KEY: LinkParameters = &[
        ("id", "$request.path.id"),
        ("key_id", "$response.body#/key_id"),
    ];
    let targets: &[(&str, &str, &str, LinkParameters)] = match (path, method) {
        ("/v1/images", "post") => &[
            ("GetImage", "/v1/images/{id}", "get", IMAGE),
            ("GetOriginal", "/v1/images/{id}/original", "get", IMAGE),
            (
                "GetThumb",
                "/v1/images/{id}/renditions/{kind}",
                "get",
                IMAGE,
            ),
            ("DeleteImage", "/v1/images/{id}", "delete", IMAGE),
        ],
        ("/v1/customers", "post") => &[
            ("GetCustomer", "/v1/customers/{id}", "get", IMAGE),
            ("UpdateCustomer", "/v1/customers/{id}", "patch", IMAGE),
            ("ListKeys", "/v1/customers/{id}/keys", "get", IMAGE),
            ("CreateKey", "/v1/customers/{id}/keys", "post", IMAGE),
            ("DeleteCustomer", "/v1/customers/{id}", "delete", IMAGE),
        ],
        ("/v1/customers/{id}/keys", "post") => &[(
            "RevokeKey",
            "/v1/customers/{id}/keys/{key_id}",
            "delete",
            KEY,
        )],
        _ => &[],
    };
    for (name, target, target_method, parameters) in targets {
        let pointer = target.replace('~', "~0").replace('/', "~1");
        let parameters: serde_json::Map<String, Value> = parameters
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        operation["responses"]["201"]["links"][*name] = json!({
            "operationRef": format!("#/paths/{pointer}/{target_method}"),
            "parameters": parameters,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imagelake_core::{
        CustomerId, ImageId,
        records::{Gps, Image, ProcessedFacts},
    };

    /// Every field an image answer can carry is in the documented `Image` schema.
    #[test]
    fn the_image_schema_names_every_field() {
        let doc = document(&Settings::default());
        let documented = doc["components"]["schemas"]["Image"]["properties"]
            .as_object()
            .unwrap()
            .clone();
        let now = Utc::now();
        let image = Image {
            id: ImageId::new(),
            customer_id: CustomerId::new(),
            status: ImageStatus::Processed,
            bytes: 1,
            sha256: "00".into(),
            content_type: "image/jpeg".into(),
            filename: Some("a.jpg".into()),
            uploaded_at: now,
            expires_at: now,
            facts: Some(ProcessedFacts {
                width: 1,
                height: 1,
                format: "jpeg".into(),
                exif: Some(ExifFacts {
                    gps: Some(Gps { lat: 1.0, lon: 2.0 }),
                    ..ExifFacts::default()
                }),
                phash: "0".into(),
                average_color: "#000000".into(),
                renditions: BTreeMap::new(),
            }),
            error: Some(ErrorInfo {
                code: imagelake_core::ErrorCode::CorruptImage,
                message: "x".into(),
            }),
            processed_at: Some(now),
            generation: Some(1),
            source: Some(imagelake_core::records::Source::Api),
        };
        let answer = imagelake_runtime::ingest::image_body(&image, true);
        for field in answer.as_object().unwrap().keys() {
            assert!(
                documented.contains_key(field),
                "`{field}` is not documented"
            );
        }
        let upload_bytes = &doc["components"]["schemas"]["UploadRequest"]["properties"]["bytes"];
        assert_eq!(upload_bytes["maximum"], 50 * 1024 * 1024);
    }
}
