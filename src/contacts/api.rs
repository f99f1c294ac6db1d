//! The JSON API for contacts and subscriptions under `/api/v1/`. Until accounts exist, it is the
//! operator's: every call needs `Authorization: Bearer $HERALD_ADMIN_TOKEN`. A subscription's
//! delivery mode (`digest`, `urgent`) and a contact's quiet time (`time_zone`, `quiet_hours`,
//! `quiet_weekends`) are set with `PATCH`; what they do is `digest`'s.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;

use super::{
    Contact, ContactRef, Filters, QuietTimeChange, SubscribeError, Subscription,
    SubscriptionChange, delete_contact, find_contact, find_subscription, list_contacts,
    list_subscriptions, set_contact_muted, set_quiet_time, subscribe, unsubscribe,
    update_subscription, validate_address,
};
use crate::digest::{DigestMode, QuietHours, parse_time_zone};
use crate::http::auth::Admin;
use crate::http::error::{ApiError, ApiJson, ErrorBody};
use crate::http::openapi::{JsonBodyErrors, TokenErrors};
use crate::http::routes::Routes;
use crate::state::AppState;

pub fn router(state: AppState) -> Routes {
    Routes::new()
        .api(routes!(contacts_list))
        .api(routes!(contacts_create))
        .api(routes!(contacts_get))
        .api(routes!(contacts_update))
        .api(routes!(contacts_delete))
        .api(routes!(contacts_mute))
        .api(routes!(contacts_unmute))
        .api(routes!(subscriptions_list))
        .api(routes!(subscriptions_create))
        .api(routes!(subscriptions_get))
        .api(routes!(subscriptions_update))
        .api(routes!(subscriptions_delete))
        .with_state(state)
}

#[derive(Serialize, ToSchema)]
struct ContactList {
    contacts: Vec<Contact>,
}

#[derive(Serialize, ToSchema)]
struct SubscriptionList {
    subscriptions: Vec<Subscription>,
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

/// Every contact.
#[utoipa::path(
    get,
    path = "/api/v1/contacts",
    tag = "contacts",
    security(("operator_token" = [])),
    responses((status = 200, description = "The contacts", body = ContactList), TokenErrors)
)]
async fn contacts_list(
    _: Admin,
    State(state): State<AppState>,
) -> Result<Json<ContactList>, ApiError> {
    Ok(Json(ContactList {
        contacts: list_contacts(&state.db).await?,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ContactIn {
    /// `telegram`, `kakao`, `webex`, `email` or `chat`.
    channel: String,
    /// The chat id, user key, room id, e-mail address or account id on that channel.
    address: String,
    /// At most 100 characters.
    #[serde(default)]
    nick_name: String,
}

/// Adds a contact, or returns the one with that channel and address.
#[utoipa::path(
    post,
    path = "/api/v1/contacts",
    tag = "contacts",
    security(("operator_token" = [])),
    request_body = ContactIn,
    responses(
        (status = 201, description = "The contact", body = Contact),
        TokenErrors,
        JsonBodyErrors,
    )
)]
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

/// One contact.
#[utoipa::path(
    get,
    path = "/api/v1/contacts/{id}",
    tag = "contacts",
    security(("operator_token" = [])),
    params(("id" = String, Path, description = "The contact's id")),
    responses(
        (status = 200, description = "The contact", body = Contact),
        (status = 404, description = "No such contact", body = ErrorBody),
        TokenErrors,
    )
)]
async fn contacts_get(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Contact>, ApiError> {
    Ok(Json(load_contact(&state, &id).await?))
}

/// `null` and absent told apart: `Some(None)` is an explicit `null`.
fn explicit_null<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// What a contact PATCH changes; fields left out stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ContactPatch {
    /// An IANA time zone, e.g. `Asia/Seoul`.
    time_zone: Option<String>,
    /// `HH:MM-HH:MM` in the contact's time zone; `null` removes the quiet hours.
    #[serde(default, deserialize_with = "explicit_null")]
    #[schema(value_type = Option<String>)]
    quiet_hours: Option<Option<String>>,
    quiet_weekends: Option<bool>,
}

/// Sets a contact's time zone and quiet time; every value is checked before anything is
/// stored.
#[utoipa::path(
    patch,
    path = "/api/v1/contacts/{id}",
    tag = "contacts",
    security(("operator_token" = [])),
    params(("id" = String, Path, description = "The contact's id")),
    request_body = ContactPatch,
    responses(
        (status = 200, description = "The changed contact", body = Contact),
        (status = 400, description = "A value is not acceptable", body = ErrorBody),
        (status = 404, description = "No such contact", body = ErrorBody),
        TokenErrors,
        JsonBodyErrors,
    )
)]
async fn contacts_update(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<ContactPatch>,
) -> Result<Json<Contact>, ApiError> {
    let contact = load_contact(&state, &id).await?;
    let time_zone = patch
        .time_zone
        .as_deref()
        .map(parse_time_zone)
        .transpose()
        .map_err(|e| ApiError::BadRequest(format!("time_zone: {e}")))?;
    let quiet_hours = match patch.quiet_hours {
        None => None,
        Some(None) => Some(None),
        Some(Some(raw)) => {
            Some(Some(QuietHours::parse(&raw).map_err(|e| {
                ApiError::BadRequest(format!("quiet_hours: {e}"))
            })?))
        }
    };
    let change = QuietTimeChange {
        time_zone,
        quiet_hours,
        quiet_weekends: patch.quiet_weekends,
    };
    set_quiet_time(&state.db, contact.id, change).await?;
    Ok(Json(load_contact(&state, &id).await?))
}

/// Deletes a contact and its subscriptions.
#[utoipa::path(
    delete,
    path = "/api/v1/contacts/{id}",
    tag = "contacts",
    security(("operator_token" = [])),
    params(("id" = String, Path, description = "The contact's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such contact", body = ErrorBody),
        TokenErrors,
    )
)]
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

/// Mutes a contact: nothing is sent to it until it is unmuted.
#[utoipa::path(
    post,
    path = "/api/v1/contacts/{id}/mute",
    tag = "contacts",
    security(("operator_token" = [])),
    params(("id" = String, Path, description = "The contact's id")),
    responses(
        (status = 200, description = "The contact, muted", body = Contact),
        (status = 404, description = "No such contact", body = ErrorBody),
        TokenErrors,
    )
)]
async fn contacts_mute(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Contact>, ApiError> {
    set_muted(&state, &id, true).await
}

/// Unmutes a contact.
#[utoipa::path(
    post,
    path = "/api/v1/contacts/{id}/unmute",
    tag = "contacts",
    security(("operator_token" = [])),
    params(("id" = String, Path, description = "The contact's id")),
    responses(
        (status = 200, description = "The contact, unmuted", body = Contact),
        (status = 404, description = "No such contact", body = ErrorBody),
        TokenErrors,
    )
)]
async fn contacts_unmute(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Contact>, ApiError> {
    set_muted(&state, &id, false).await
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct SubscriptionFilter {
    /// Only this contact's subscriptions.
    contact_id: Option<String>,
}

/// Every subscription, or one contact's.
#[utoipa::path(
    get,
    path = "/api/v1/subscriptions",
    tag = "contacts",
    security(("operator_token" = [])),
    params(SubscriptionFilter),
    responses(
        (status = 200, description = "The subscriptions", body = SubscriptionList),
        (status = 404, description = "No such contact", body = ErrorBody),
        TokenErrors,
    )
)]
async fn subscriptions_list(
    _: Admin,
    State(state): State<AppState>,
    Query(filter): Query<SubscriptionFilter>,
) -> Result<Json<SubscriptionList>, ApiError> {
    let contact_id = match filter.contact_id.as_deref() {
        Some(raw) => Some(load_contact(&state, raw).await?.id),
        None => None,
    };
    Ok(Json(SubscriptionList {
        subscriptions: list_subscriptions(&state.db, contact_id).await?,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SubscriptionIn {
    /// A contact's id (a string, or a number).
    #[serde(with = "crate::ids::as_string")]
    #[schema(value_type = String)]
    contact_id: i64,
    /// A GitHub repository (`owner/name` or its URL) or any git remote URL.
    repository: String,
    /// A branch name, or a glob such as `release/*`.
    branch: String,
    /// Only pushes touching one of these path globs.
    #[serde(default)]
    paths: Vec<String>,
    /// Not pushes whose commits are all by one of these authors.
    #[serde(default)]
    exclude_authors: Vec<String>,
}

/// Subscribes a contact to a repository branch.
///
/// The repository and branch must exist; the branch is watched from now on.
#[utoipa::path(
    post,
    path = "/api/v1/subscriptions",
    tag = "contacts",
    security(("operator_token" = [])),
    request_body = SubscriptionIn,
    responses(
        (status = 201, description = "The subscription", body = Subscription),
        (status = 503, description = "The repository could not be reached", body = ErrorBody),
        TokenErrors,
        JsonBodyErrors,
    )
)]
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

/// One subscription.
#[utoipa::path(
    get,
    path = "/api/v1/subscriptions/{id}",
    tag = "contacts",
    security(("operator_token" = [])),
    params(("id" = String, Path, description = "The subscription's id")),
    responses(
        (status = 200, description = "The subscription", body = Subscription),
        (status = 404, description = "No such subscription", body = ErrorBody),
        TokenErrors,
    )
)]
async fn subscriptions_get(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Subscription>, ApiError> {
    Ok(Json(load_subscription(&state, &id).await?))
}

/// What a PATCH changes; fields left out stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SubscriptionPatch {
    muted: Option<bool>,
    /// Replaces the path globs.
    paths: Option<Vec<String>>,
    /// Replaces the excluded authors.
    exclude_authors: Option<Vec<String>>,
    /// `instant`, `hourly` or `daily@HH:MM`.
    digest: Option<String>,
    urgent: Option<bool>,
}

/// Mutes, unmutes or changes the filters of a subscription.
#[utoipa::path(
    patch,
    path = "/api/v1/subscriptions/{id}",
    tag = "contacts",
    security(("operator_token" = [])),
    params(("id" = String, Path, description = "The subscription's id")),
    request_body = SubscriptionPatch,
    responses(
        (status = 200, description = "The subscription as changed", body = Subscription),
        (status = 404, description = "No such subscription", body = ErrorBody),
        TokenErrors,
        JsonBodyErrors,
    )
)]
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
    let digest = patch
        .digest
        .as_deref()
        .map(DigestMode::parse)
        .transpose()
        .map_err(|e| ApiError::BadRequest(format!("digest: {e}")))?;
    let change = SubscriptionChange {
        muted: patch.muted,
        filters,
        digest,
        urgent: patch.urgent,
    };
    update_subscription(&state.db, current.id, change).await?;
    Ok(Json(load_subscription(&state, &id).await?))
}

/// Deletes a subscription.
#[utoipa::path(
    delete,
    path = "/api/v1/subscriptions/{id}",
    tag = "contacts",
    security(("operator_token" = [])),
    params(("id" = String, Path, description = "The subscription's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such subscription", body = ErrorBody),
        TokenErrors,
    )
)]
async fn subscriptions_delete(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let subscription = load_subscription(&state, &id).await?;
    unsubscribe(&state.db, subscription.id).await?;
    Ok(StatusCode::NO_CONTENT)
}
