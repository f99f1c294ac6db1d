//! Forms are refused unless they carry this browser's CSRF token.
//!
//! The token is an HMAC keyed with the browser's random `herald_csrf` cookie over its session
//! token (empty when signed out): another site can make a browser post a form, but cannot read
//! the cookies to compute the token. Signing in or out changes the token, so a form from before
//! is refused rather than acted on in the other session. A form posted without the right token
//! gets a 403 page and changes nothing.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::session::{SignedIn, Visitor};
use super::{MessagePage, WebState};
use crate::accounts::Account;
use crate::crypto::{constant_time_eq, hmac_sha256};

/// The name of the hidden field every form carries.
pub const FIELD: &str = "csrf";
/// Page forms are small.
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// The token for a browser key and its session (if any).
pub fn token(browser_key: &str, session: Option<&str>) -> String {
    hex::encode(hmac_sha256(
        browser_key.as_bytes(),
        &[
            b"herald web form\0".as_slice(),
            session.unwrap_or_default().as_bytes(),
        ],
    ))
}

#[derive(Deserialize, Default)]
struct TokenOnly {
    #[serde(default)]
    csrf: String,
}

/// Whether a posted form body carries this visitor's token.
pub fn carries_token(visitor: &Visitor, body: &[u8]) -> bool {
    let sent: TokenOnly = serde_urlencoded::from_bytes(body).unwrap_or_default();
    !sent.csrf.is_empty() && constant_time_eq(&sent.csrf, visitor.csrf_token())
}

/// A posted form whose CSRF token was right, with its visitor.
pub struct CsrfForm<T> {
    pub visitor: Visitor,
    pub form: T,
}

/// The page for a form refused for its token.
pub fn refused(visitor: &Visitor) -> Response {
    let t = visitor.lang.messages();
    MessagePage::new(visitor, t.csrf_title, t.csrf_text, "bad")
        .link("/", t.back_home)
        .with_status(StatusCode::FORBIDDEN)
}

impl<T> FromRequest<WebState> for CsrfForm<T>
where
    T: DeserializeOwned,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &WebState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let visitor = Visitor::from_request_parts(&mut parts, state).await?;
        let body = Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(IntoResponse::into_response)?;
        if !carries_token(&visitor, &body) {
            tracing::info!(path = %visitor.here, "a form without its CSRF token was refused");
            return Err(refused(&visitor));
        }
        match serde_urlencoded::from_bytes::<T>(&body) {
            Ok(form) => Ok(CsrfForm { visitor, form }),
            Err(error) => {
                let t = visitor.lang.messages();
                Err(
                    MessagePage::new(&visitor, t.form_has_errors, &error.to_string(), "bad")
                        .link("/", t.back_home)
                        .with_status(StatusCode::BAD_REQUEST),
                )
            }
        }
    }
}

/// A posted form whose CSRF token was right, from a signed-in visitor: what every form about
/// "my" things takes. The token is checked first, as for any form; a signed-out visitor with a
/// right token is then sent to the sign-in page.
pub struct SignedInForm<T> {
    pub visitor: Visitor,
    pub account: Account,
    pub form: T,
}

impl<T> FromRequest<WebState> for SignedInForm<T>
where
    T: DeserializeOwned,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &WebState) -> Result<Self, Self::Rejection> {
        let CsrfForm { visitor, form } = CsrfForm::from_request(request, state).await?;
        let SignedIn { visitor, account } = SignedIn::of(visitor)?;
        Ok(SignedInForm {
            visitor,
            account,
            form,
        })
    }
}

/// The form of a button that acts on what its path names: nothing but the token.
#[derive(Deserialize)]
pub struct NoFields {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_depends_on_the_browser_and_the_session() {
        let signed_out = token("key-a", None);
        assert_eq!(signed_out, token("key-a", None));
        assert_ne!(signed_out, token("key-b", None));
        assert_ne!(signed_out, token("key-a", Some("session")));
        assert_ne!(token("key-a", Some("one")), token("key-a", Some("two")));
        assert_eq!(signed_out.len(), 64);
    }
}
