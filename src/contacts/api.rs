//! The JSON API for contacts and subscriptions under `/api/v1/`. Until accounts exist, it is the
//! operator's: every call needs `Authorization: Bearer $HERALD_ADMIN_TOKEN`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Contact, ContactRef, Filters, SubscribeError, Subscription, delete_contact, find_contact,
    find_subscription, list_contacts, list_subscriptions, set_contact_muted, subscribe,
    unsubscribe, update_subscription, validate_address,
};
use crate::http::auth::Admin;
use crate::http::error::{ApiError, ApiJson};
use crate::state::AppState;

pub fn router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/api/v1/contacts", get(contacts_list).post(contacts_create))
        .route(
            "/api/v1/contacts/{id}",
            get(contacts_get).delete(contacts_delete),
        )
        .route("/api/v1/contacts/{id}/mute", post(contacts_mute))
        .route("/api/v1/contacts/{id}/unmute", post(contacts_unmute))
        .route(
            "/api/v1/subscriptions",
            get(subscriptions_list).post(subscriptions_create),
        )
        .route(
            "/api/v1/subscriptions/{id}",
            get(subscriptions_get)
                .patch(subscriptions_update)
                .delete(subscriptions_delete),
        )
        .with_state(state)
}

/// A path id; anything that is not one is simply not found.
fn parse_id(raw: &str, what: &str) -> Result<i64, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::NotFound(format!("no {what} with id {raw:?}")))
}

impl From<SubscribeError> for ApiError {
    fn from(error: SubscribeError) -> Self {
        match error {
            SubscribeError::Store(e) => e.into(),
            SubscribeError::Unreachable(m) => ApiError::Unavailable(m),
            SubscribeError::RepositoryNotFound(_) | SubscribeError::BranchNotFound { .. } => {
                ApiError::Validation(error.to_string())
            }
            other => ApiError::Validation(other.to_string()),
        }
    }
}

async fn contacts_list(_: Admin, State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"contacts": list_contacts(&state.db).await?})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContactIn {
    channel: String,
    address: String,
    #[serde(default)]
    nick_name: String,
}

async fn contacts_create(
    _: Admin,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<ContactIn>,
) -> Result<(StatusCode, Json<Contact>), ApiError> {
    let channel = input.channel.trim().to_lowercase();
    let address = validate_address(&channel, &input.address).map_err(ApiError::Validation)?;
    if input.nick_name.chars().count() > 100 {
        return Err(ApiError::Validation(
            "nick_name: at most 100 characters".into(),
        ));
    }
    let contact = super::upsert_contact(
        &state.db,
        &state.ids,
        &channel,
        &address,
        input.nick_name.trim(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(contact)))
}

async fn load_contact(state: &AppState, raw: &str) -> Result<Contact, ApiError> {
    let id = parse_id(raw, "contact")?;
    find_contact(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no contact with id {raw:?}")))
}

async fn contacts_get(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Contact>, ApiError> {
    Ok(Json(load_contact(&state, &id).await?))
}

async fn contacts_delete(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let contact = load_contact(&state, &id).await?;
    delete_contact(&state.db, contact.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_muted(state: &AppState, id: &str, muted: bool) -> Result<Json<Contact>, ApiError> {
    let contact = load_contact(state, id).await?;
    set_contact_muted(&state.db, contact.id, muted).await?;
    Ok(Json(load_contact(state, id).await?))
}

async fn contacts_mute(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Contact>, ApiError> {
    set_muted(&state, &id, true).await
}

async fn contacts_unmute(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Contact>, ApiError> {
    set_muted(&state, &id, false).await
}

#[derive(Deserialize)]
struct SubscriptionFilter {
    contact_id: Option<String>,
}

async fn subscriptions_list(
    _: Admin,
    State(state): State<AppState>,
    Query(filter): Query<SubscriptionFilter>,
) -> Result<Json<Value>, ApiError> {
    let contact_id = match filter.contact_id.as_deref() {
        Some(raw) => Some(load_contact(&state, raw).await?.id),
        None => None,
    };
    Ok(Json(
        json!({"subscriptions": list_subscriptions(&state.db, contact_id).await?}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriptionIn {
    #[serde(with = "crate::ids::as_string")]
    contact_id: i64,
    repository: String,
    branch: String,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    exclude_authors: Vec<String>,
}

async fn subscriptions_create(
    _: Admin,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<SubscriptionIn>,
) -> Result<(StatusCode, Json<Subscription>), ApiError> {
    let contact = find_contact(&state.db, input.contact_id)
        .await?
        .ok_or_else(|| {
            ApiError::Validation(format!("contact_id: no contact {}", input.contact_id))
        })?;
    let filters = Filters {
        paths: input.paths,
        exclude_authors: input.exclude_authors,
    };
    let (_, subscription, _) = subscribe(
        &state,
        ContactRef::Existing(&contact),
        &input.repository,
        &input.branch,
        filters,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(subscription)))
}

async fn load_subscription(state: &AppState, raw: &str) -> Result<Subscription, ApiError> {
    let id = parse_id(raw, "subscription")?;
    find_subscription(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no subscription with id {raw:?}")))
}

async fn subscriptions_get(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Subscription>, ApiError> {
    Ok(Json(load_subscription(&state, &id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriptionPatch {
    muted: Option<bool>,
    paths: Option<Vec<String>>,
    exclude_authors: Option<Vec<String>>,
}

async fn subscriptions_update(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<SubscriptionPatch>,
) -> Result<Json<Subscription>, ApiError> {
    let current = load_subscription(&state, &id).await?;
    let filters = if patch.paths.is_some() || patch.exclude_authors.is_some() {
        let filters = Filters {
            paths: patch.paths.unwrap_or(current.paths.clone()),
            exclude_authors: patch
                .exclude_authors
                .unwrap_or(current.exclude_authors.clone()),
        };
        filters.validate().map_err(ApiError::Validation)?;
        Some(filters)
    } else {
        None
    };
    update_subscription(&state.db, current.id, patch.muted, filters).await?;
    Ok(Json(load_subscription(&state, &id).await?))
}

async fn subscriptions_delete(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let subscription = load_subscription(&state, &id).await?;
    unsubscribe(&state.db, subscription.id).await?;
    Ok(StatusCode::NO_CONTENT)
}
