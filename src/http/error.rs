//! The JSON API's one error type, turned into a response here and nowhere else.
//!
//! Body: `{"error": {"code": "<stable snake_case code>", "message": "<for people>"}}`. Internal
//! errors are logged with their cause and answered with a generic message; driver text never
//! reaches a client. (The reference-compatible routes keep their own shapes; see
//! `contacts::reference` and SPEC §A.)

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Unavailable(String),
    /// The database could not store the request's writes: its disk is full or failing
    /// (`store::storage_failure`). Nothing of the request was stored.
    #[error("{}", .0.message())]
    StorageUnavailable(crate::store::StorageFailure),
    /// Refused by a limit; the client may try again after the duration (`Retry-After`).
    #[error("{0}")]
    TooManyRequests(String, std::time::Duration),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) | ApiError::StorageUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::TooManyRequests(..) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::BadRequest(_) => ErrorCode::BadRequest,
            ApiError::Validation(_) => ErrorCode::ValidationFailed,
            ApiError::Unauthorized(_) => ErrorCode::Unauthorized,
            ApiError::Forbidden(_) => ErrorCode::Forbidden,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::Conflict(_) => ErrorCode::Conflict,
            ApiError::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            ApiError::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            ApiError::Unavailable(_) => ErrorCode::Unavailable,
            ApiError::StorageUnavailable(_) => ErrorCode::StorageUnavailable,
            ApiError::TooManyRequests(..) => ErrorCode::TooManyRequests,
            ApiError::Internal(_) => ErrorCode::Internal,
        }
    }
}

/// The JSON body of every `/api/v1` error (and of the 404 for an unknown route).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "not_found", "message": "no contact with id \"7\""}}))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// For people; its wording may change. Internal errors say only "internal error".
    pub message: String,
}

/// The stable, machine-readable part of an error: one per HTTP status herald uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the request is malformed (e.g. not JSON).
    BadRequest,
    /// 422: well-formed but not acceptable; the message names the field.
    ValidationFailed,
    /// 401: a token is missing or wrong.
    Unauthorized,
    /// 403: the token is right but may not do this.
    Forbidden,
    /// 404: no such thing (or not yours), or no such route.
    NotFound,
    /// 409: it already exists, or is already in that state.
    Conflict,
    /// 413: the body is larger than the route allows.
    PayloadTooLarge,
    /// 415: the body is not `application/json`.
    UnsupportedMediaType,
    /// 503: a service herald depends on (a git host, the search index) is unavailable.
    Unavailable,
    /// 503: herald's storage is full or failing, so nothing of the request was stored; try
    /// again later (`Retry-After`). `/readyz` is not ready meanwhile.
    StorageUnavailable,
    /// 429: refused by a limit; `Retry-After` says when to try again.
    TooManyRequests,
    /// 500: herald failed; the cause is in its log, not in the answer.
    Internal,
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        if crate::store::is_unique_violation(&error) {
            return ApiError::Conflict("that already exists".into());
        }
        ApiError::Internal(anyhow::Error::new(error).context("database"))
    }
}

/// How long a client refused for lack of storage is asked to wait (`Retry-After`).
pub const STORAGE_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// Put on a response that refused a request because storage failed, so that the layer
/// `http::record_storage_failures` tells the database's `StorageHealth` (and `/readyz`).
#[derive(Debug, Clone, Copy)]
pub struct StorageFailed(pub crate::store::StorageFailure);

/// Marks `response` as a refusal for lack of storage ([`StorageFailed`]) and asks the client to
/// come back later; every error type that answers such a refusal calls it.
pub fn mark_storage_failed(response: &mut Response, failure: crate::store::StorageFailure) {
    response.extensions_mut().insert(StorageFailed(failure));
    response.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        crate::limits::retry_after_secs(STORAGE_RETRY_AFTER).into(),
    );
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Whatever wrapped it, a full or failing disk is told as such: one place for every
        // handler that returns `ApiError`.
        let this = match self {
            ApiError::Internal(error) => match crate::store::storage_failure_in(&error) {
                Some(failure) => {
                    tracing::error!(
                        error = format!("{error:#}"),
                        "request failed: storage unavailable"
                    );
                    ApiError::StorageUnavailable(failure)
                }
                None => {
                    tracing::error!(error = format!("{error:#}"), "request failed");
                    ApiError::Internal(error)
                }
            },
            other => other,
        };
        let storage = match &this {
            ApiError::StorageUnavailable(failure) => Some(*failure),
            _ => None,
        };
        let mut response = this.body_response();
        if let Some(failure) = storage {
            mark_storage_failed(&mut response, failure);
        }
        response
    }
}

impl ApiError {
    fn body_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
            },
        };
        let mut response = (self.status(), Json(body)).into_response();
        if let ApiError::TooManyRequests(_, wait) = &self {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                crate::limits::retry_after_secs(*wait).into(),
            );
        }
        response
    }
}

/// Maps axum's JSON rejections onto [`ApiError`], so a bad body gets the same error shape as
/// every other failure.
pub fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => ApiError::Validation(e.body_text()),
        JsonRejection::JsonSyntaxError(e) => ApiError::BadRequest(e.body_text()),
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::UnsupportedMediaType("expected Content-Type: application/json".into())
        }
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge("the request body is too large".into())
        }
        other => ApiError::BadRequest(other.body_text()),
    }
}

/// `Json<T>` whose rejection is an [`ApiError`].
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}
