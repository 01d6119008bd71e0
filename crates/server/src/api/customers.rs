//! Customer accounts and their API keys. Creating, changing and deleting customers and keys is
//! for the admin; a customer may read its own record.

use std::collections::HashMap;

use axum::{
    Json,
    extract::{Path, Query, State},
    http::StatusCode,
};
use imagelake_core::{
    CustomerId, KeyId,
    records::{ApiKey, Customer},
};
use imagelake_metadata::Removal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    paging::{decode_cursor, encode_cursor, filtered_page, parse_limit},
    parse_id,
};
use imagelake_runtime::{
    AppState,
    keys::{generate_key, hash_secret, wire_secrets},
    sweeper::remove_image,
};

use crate::{
    auth::{Admin, Caller},
    error::{ApiError, JsonBody},
};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCustomer {
    /// The id to create the customer under, for a customer that already has one elsewhere (an
    /// import, or stream producers that name it); a new one when absent. `409` when taken.
    #[schema(format = Uuid)]
    id: Option<String>,
    /// Up to 200 characters, not all blank; kept trimmed.
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    name: String,
    /// Unique among customers whatever its case.
    #[schema(format = Email, max_length = 254)]
    email: String,
    /// Letters, digits, `-` and `_`; defaults to `standard`.
    #[schema(pattern = "^\\s*[A-Za-z0-9_-]{1,64}\\s*$")]
    plan: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerUpdate {
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    name: Option<String>,
    #[schema(format = Email, max_length = 254)]
    email: Option<String>,
    #[schema(pattern = "^\\s*[A-Za-z0-9_-]{1,64}\\s*$")]
    plan: Option<String>,
}

/// A customer's keys.
#[derive(Serialize, ToSchema)]
pub struct KeyList {
    keys: Vec<ApiKey>,
}

/// The new customer and its first API key, shown only in this answer.
#[derive(Serialize, ToSchema)]
pub struct CreatedCustomer {
    #[serde(flatten)]
    customer: Customer,
    api_key: String,
    #[schema(value_type = String, format = Uuid)]
    key_id: KeyId,
}

/// A new API key, shown only in this answer.
#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    #[schema(value_type = String, format = Uuid)]
    key_id: KeyId,
    api_key: String,
    prefix: String,
    created_at: chrono::DateTime<chrono::Utc>,
}

/// Blank as the document's patterns (`\s`) count it: Unicode white space and the four
/// information separators U+001C-U+001F. Validation and the OpenAPI document agree on every
/// string, so a client generating from the schema is never refused.
fn is_blank(c: char) -> bool {
    c.is_whitespace() || ('\u{1C}'..='\u{1F}').contains(&c)
}

fn check_name(name: &str) -> Result<String, ApiError> {
    if name.chars().count() > 200 || name.chars().all(is_blank) {
        return Err(ApiError::invalid(
            "field `name` must be 1-200 characters, not all blank",
        ));
    }
    Ok(name.trim_matches(is_blank).to_owned())
}

fn check_email(email: &str) -> Result<String, ApiError> {
    let trimmed = email.trim_matches(is_blank);
    let valid = email.chars().count() <= 254
        && trimmed.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
        })
        && !trimmed.chars().any(|c| is_blank(c) || c.is_control());
    if !valid {
        return Err(ApiError::invalid(
            "field `email` must be an email address (at most 254 characters)",
        ));
    }
    Ok(trimmed.to_owned())
}

fn check_plan(plan: &str) -> Result<String, ApiError> {
    let plan = plan.trim_matches(is_blank);
    if plan.is_empty()
        || plan.len() > 64
        || !plan
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ApiError::invalid(
            "field `plan` must be 1-64 letters, digits, `-` or `_`",
        ));
    }
    Ok(plan.to_owned())
}

/// The customer, or `not_found`.
async fn existing_customer(state: &AppState, id: CustomerId) -> Result<Customer, ApiError> {
    state
        .store
        .get_customer(id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such customer"))
}

fn new_key(customer: CustomerId, now: chrono::DateTime<chrono::Utc>) -> (ApiKey, String) {
    let (secret, prefix) = generate_key();
    let id = KeyId::new();
    let key = ApiKey {
        id,
        customer_id: customer,
        prefix,
        hash: hash_secret(&secret),
        wire: Some(wire_secrets(&id.to_string(), &secret)),
        created_at: now,
        revoked_at: None,
    };
    (key, secret)
}

/// Creates a customer and its first API key.
#[utoipa::path(post, path = "/v1/customers", tag = "customers", security(("bearer" = [])), request_body = NewCustomer,
    responses((status = 201, body = CreatedCustomer),
        (status = 400, body = super::ErrorBody, description = "`invalid_request`: a field is missing, unknown or invalid"),
        (status = 404, body = super::ErrorBody, description = "called with a customer key: admin endpoints do not exist for customers"),
        (status = 409, body = super::ErrorBody, description = "`conflict`: a customer with this email (in any case) exists"),
        (status = 413, body = super::ErrorBody, description = "JSON bodies are limited to 64 KiB")))]
pub async fn create(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<NewCustomer>,
) -> Result<(StatusCode, Json<CreatedCustomer>), ApiError> {
    let now = state.clock.now();
    let id = match body.id.as_deref() {
        Some(id) => id
            .trim()
            .parse()
            .map_err(|_| ApiError::invalid("field `id`: expected a UUID"))?,
        None => CustomerId::new(),
    };
    let customer = Customer {
        id,
        name: check_name(&body.name)?,
        email: check_email(&body.email)?,
        plan: check_plan(body.plan.as_deref().unwrap_or("standard"))?,
        created_at: now,
        updated_at: now,
    };
    let (key, secret) = new_key(customer.id, now);
    state.store.insert_customer(&customer, &key).await?;
    state.known_keys.remember(&key.hash);
    tracing::info!(customer_id = %customer.id, "customer created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedCustomer {
            customer,
            api_key: secret,
            key_id: key.id,
        }),
    ))
}

/// A page of customers, newest first.
#[derive(Serialize, ToSchema)]
pub struct CustomerPage {
    customers: Vec<Customer>,
    /// Pass as `cursor` for the next page; null on the last page.
    next_cursor: Option<String>,
}

/// Customers, newest first; with `q`, those whose name or email contains it in any case.
#[utoipa::path(get, path = "/v1/customers", tag = "customers", security(("bearer" = [])),
    params(("q" = Option<String>, Query, description = "only customers whose name or email contains this, in any case"),
           ("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "default 50"),
           ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page; empty or absent for the first")),
    responses((status = 200, body = CustomerPage, description = "With `q`, a page looks at no more than 5,000 customers: it may hold fewer than `limit` and still have a `next_cursor`"),
        (status = 400, body = super::ErrorBody, description = "`invalid_request`: a bad or unknown query parameter, or a cursor this API did not return"),
        (status = 404, body = super::ErrorBody, description = "called with a customer key")))]
pub async fn list(
    _: Admin,
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<CustomerPage>, ApiError> {
    let (mut limit, mut after, mut q) = (50, None, None);
    for (name, value) in &params {
        match name.as_str() {
            "limit" => limit = parse_limit(name, value, 200)?,
            "q" if value.trim().is_empty() => {}
            "q" => q = Some(value.trim().to_lowercase()),
            "cursor" if value.is_empty() => {}
            "cursor" => after = Some(decode_cursor::<CustomerId>(value)?),
            other => {
                return Err(ApiError::invalid(format!(
                    "unknown query parameter `{other}`; use q, limit or cursor"
                )));
            }
        }
    }
    let store = &state.store;
    let fetch = |after, limit| async move { Ok(store.list_customers(after, limit).await?) };
    let matches = |c: &Customer| {
        q.as_ref()
            .is_none_or(|q| c.name.to_lowercase().contains(q) || c.email.to_lowercase().contains(q))
    };
    let (customers, next) = filtered_page(
        limit,
        after,
        q.is_some(),
        fetch,
        |c: &Customer| (c.created_at, c.id),
        matches,
    )
    .await?;
    Ok(Json(CustomerPage {
        customers,
        next_cursor: next.map(|(at, id)| encode_cursor(at, &id)),
    }))
}

/// A customer, for the admin or that customer.
#[utoipa::path(get, path = "/v1/customers/{id}", tag = "customers", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = Customer),
        (status = 404, body = super::ErrorBody, description = "no such customer, or another customer's id")))]
pub async fn get_one(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Customer>, ApiError> {
    caller.not_a_company_key()?;
    let id: CustomerId = parse_id(&id)?;
    if !caller.can_access(id) {
        return Err(ApiError::not_found("no such customer"));
    }
    Ok(Json(existing_customer(&state, id).await?))
}

/// Changes a customer's name, email or plan. A change to nothing writes nothing (`updated_at`
/// stays, no event).
#[utoipa::path(patch, path = "/v1/customers/{id}", tag = "customers", security(("bearer" = [])), request_body = CustomerUpdate,
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = Customer),
        (status = 400, body = super::ErrorBody, description = "`invalid_request`: a field is unknown or invalid"),
        (status = 404, body = super::ErrorBody, description = "no such customer; or called with a customer key"),
        (status = 409, body = super::ErrorBody, description = "`conflict`: another customer has this email"),
        (status = 413, body = super::ErrorBody, description = "JSON bodies are limited to 64 KiB")))]
pub async fn update(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<CustomerUpdate>,
) -> Result<Json<Customer>, ApiError> {
    let id: CustomerId = parse_id(&id)?;
    let before = existing_customer(&state, id).await?;
    let mut customer = before.clone();
    if let Some(name) = body.name {
        customer.name = check_name(&name)?;
    }
    if let Some(email) = body.email {
        customer.email = check_email(&email)?;
    }
    if let Some(plan) = body.plan {
        customer.plan = check_plan(&plan)?;
    }
    if customer == before {
        return Ok(Json(customer));
    }
    customer.updated_at = state.clock.now();
    state.store.update_customer(&customer).await?;
    Ok(Json(customer))
}

/// Deletes a customer with all its images, renditions and keys.
#[utoipa::path(delete, path = "/v1/customers/{id}", tag = "customers", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)),
    responses((status = 204, description = "deleted with its keys, images and records"),
        (status = 404, body = super::ErrorBody, description = "no such customer; or called with a customer key")))]
pub async fn delete(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: CustomerId = parse_id(&id)?;
    existing_customer(&state, id).await?;
    for image_id in state.store.customer_image_ids(id).await? {
        if let Some(image) = state.store.get_image(image_id).await? {
            remove_image(&state, &image, Removal::Deleted)
                .await
                .map_err(|e| ApiError::internal(&e))?;
        }
    }
    state.store.delete_customer(id, state.clock.now()).await?;
    tracing::info!(customer_id = %id, "customer deleted with its images");
    Ok(StatusCode::NO_CONTENT)
}

/// Issues another API key (rotation: issue, switch clients, then revoke the old one).
#[utoipa::path(post, path = "/v1/customers/{id}/keys", tag = "customers", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)),
    responses((status = 201, body = CreatedKey),
        (status = 404, body = super::ErrorBody, description = "no such customer; or called with a customer key")))]
pub async fn create_key(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let id: CustomerId = parse_id(&id)?;
    let (key, secret) = new_key(id, state.clock.now());
    state.store.insert_key(&key).await?;
    state.known_keys.remember(&key.hash);
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            key_id: key.id,
            api_key: secret,
            prefix: key.prefix,
            created_at: key.created_at,
        }),
    ))
}

/// A customer's keys (prefixes and dates, never secrets).
#[utoipa::path(get, path = "/v1/customers/{id}/keys", tag = "customers", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = KeyList),
        (status = 404, body = super::ErrorBody, description = "no such customer; or called with a customer key")))]
pub async fn list_keys(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<KeyList>, ApiError> {
    let id: CustomerId = parse_id(&id)?;
    existing_customer(&state, id).await?;
    Ok(Json(KeyList {
        keys: state.store.list_keys(id).await?,
    }))
}

/// Revokes a key at once.
#[utoipa::path(delete, path = "/v1/customers/{id}/keys/{key_id}", tag = "customers", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid), ("key_id" = String, Path, format = Uuid)),
    responses((status = 204, description = "revoked"),
        (status = 404, body = super::ErrorBody, description = "no such live key of this customer; or called with a customer key")))]
pub async fn revoke_key(
    _: Admin,
    State(state): State<AppState>,
    Path((id, key_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (id, key_id): (CustomerId, KeyId) = (parse_id(&id)?, parse_id(&key_id)?);
    state
        .store
        .revoke_key(id, key_id, state.clock.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_fields() {
        assert!(check_email("ops@acme.test").is_ok());
        for bad in ["", "acme.test", "@acme.test", "ops@acme", "o ps@acme.test"] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
        assert!(check_name("  ").is_err());
        assert!(
            check_name("\u{1F}\u{3000}").is_err(),
            "separators and ideographic spaces are blank"
        );
        assert_eq!(check_name(" Acme ").unwrap(), "Acme");
        assert!(check_name(&"x".repeat(201)).is_err());
        assert_eq!(check_email(" ops@acme.test\n").unwrap(), "ops@acme.test");
        assert!(check_email("a@b@acme.test").is_err());
        assert!(check_email("ops@acme.test\u{1}").is_err());
        assert_eq!(check_plan(" pro \n").unwrap(), "pro");
        assert!(check_plan("pro-2").is_ok());
        assert!(check_plan("pro plan").is_err());
    }
}
