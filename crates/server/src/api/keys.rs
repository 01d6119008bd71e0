//! Company keys with a role (`ingest` for the lake's declared tables, `analyst` for SQL): made,
//! listed and revoked by the admin; stored as hashes like customer keys, and shown once.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use imagelake_core::{
    KeyId,
    records::{KeyRole, ServiceKey},
};
use imagelake_runtime::{
    AppState,
    keys::{generate_key, hash_secret, wire_secrets},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::parse_id;
use crate::{
    auth::Admin,
    error::{ApiError, JsonBody},
};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewServiceKey {
    pub role: KeyRole,
    /// Who uses the key: letters, digits, `.`, `-` and `_`, up to 64.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub name: String,
}

/// A new company key; the secret is in this answer only.
#[derive(Serialize, ToSchema)]
pub struct CreatedServiceKey {
    #[schema(value_type = String, format = Uuid)]
    key_id: KeyId,
    role: KeyRole,
    name: String,
    api_key: String,
    prefix: String,
    created_at: chrono::DateTime<chrono::Utc>,
}

/// The company keys, without secrets.
#[derive(Serialize, ToSchema)]
pub struct ServiceKeyList {
    keys: Vec<ServiceKey>,
}

fn check_key_name(name: &str) -> Result<String, ApiError> {
    let valid = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !valid {
        return Err(ApiError::invalid(
            "field `name` must be 1-64 letters, digits, `.`, `-` or `_`",
        ));
    }
    Ok(name.to_owned())
}

/// Makes a company key with a role: `ingest` may post records to the lake's declared tables,
/// `analyst` may query the lake; neither reaches customers' images.
#[utoipa::path(post, path = "/v1/admin/keys", tag = "admin", security(("bearer" = [])), request_body = NewServiceKey,
    responses((status = 201, body = CreatedServiceKey, description = "the key, shown only now"),
        (status = 400, body = super::ErrorBody, description = "`invalid_request`: an unknown role or a bad name"),
        (status = 404, body = super::ErrorBody, description = "called with a customer key: admin endpoints do not exist for customers")))]
pub async fn create(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<NewServiceKey>,
) -> Result<(StatusCode, Json<CreatedServiceKey>), ApiError> {
    let name = check_key_name(&body.name)?;
    let (secret, prefix) = generate_key();
    let key_id = KeyId::new();
    let key = ServiceKey {
        key_id,
        role: body.role,
        name,
        prefix,
        hash: hash_secret(&secret),
        wire: Some(wire_secrets(&key_id.to_string(), &secret)),
        created_at: state.clock.now(),
        revoked_at: None,
    };
    state.store.insert_service_key(&key).await?;
    tracing::info!(key_id = %key.key_id, role = key.role.as_str(), name = %key.name, "company key created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedServiceKey {
            key_id: key.key_id,
            role: key.role,
            name: key.name,
            api_key: secret,
            prefix: key.prefix,
            created_at: key.created_at,
        }),
    ))
}

/// Every company key, revoked ones with `revoked_at`, oldest first; never a secret.
#[utoipa::path(get, path = "/v1/admin/keys", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = ServiceKeyList),
        (status = 404, body = super::ErrorBody, description = "called with a customer key")))]
pub async fn list(
    _: Admin,
    State(state): State<AppState>,
) -> Result<Json<ServiceKeyList>, ApiError> {
    let keys = state.store.list_service_keys().await?;
    Ok(Json(ServiceKeyList { keys }))
}

/// Revokes a company key at once: its next request is refused.
#[utoipa::path(delete, path = "/v1/admin/keys/{key_id}", tag = "admin", security(("bearer" = [])),
    params(("key_id" = String, Path, format = Uuid)),
    responses((status = 204, description = "revoked"),
        (status = 404, body = super::ErrorBody, description = "no such live key; or called with a customer key")))]
pub async fn revoke(
    _: Admin,
    State(state): State<AppState>,
    Path(key_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let key_id: KeyId = parse_id(&key_id)?;
    state
        .store
        .revoke_service_key(key_id, state.clock.now())
        .await?;
    tracing::info!(%key_id, "company key revoked");
    Ok(StatusCode::NO_CONTENT)
}
