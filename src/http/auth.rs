//! The operator's identity (`HERALD_ADMIN_TOKEN`, in the Authorization header or the pages'
//! cookie) and the header readers every identity shares. Accounts and the `Actor` that is
//! either of the two live in `accounts::auth`.
//!
//! Wrong tokens are counted per client address (`AppInner::operator_token_failures`): past the
//! limit, that address gets 429 without its token being compared, so guessing stops while the
//! operator elsewhere is not affected. A live login token is an account's, not a guess, and is
//! never counted.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::request::Parts;

use super::error::ApiError;
use crate::crypto::constant_time_eq;
use crate::limits::ClientKey;
use crate::state::AppState;
use crate::store::StoreError;

/// Proof that the request carries the operator token.
pub struct Admin;

pub fn bearer_token(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// The name of the cookie the login page sets, holding the operator token, so that a browser can
/// use the pages. `HttpOnly` and `SameSite=Strict`: other sites can neither read it nor make the
/// browser send it with their forms.
pub const ADMIN_COOKIE: &str = "herald_admin";

pub fn cookie<'p>(parts: &'p Parts, name: &str) -> Option<&'p str> {
    parts
        .headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The client address a request came from. herald always serves with axum's `ConnectInfo`;
/// a router called without it counts every request under one address, which limits rather than
/// opens.
pub fn client_of(parts: &Parts) -> ClientKey {
    ClientKey::from(client_address(&parts.extensions))
}

/// The address of the client a request came from (see [`client_of`]): what `http::serve` put
/// on the request ([`ClientAddress`]), else the socket's peer.
pub fn client_address(extensions: &axum::http::Extensions) -> IpAddr {
    if let Some(ClientAddress(address)) = extensions.get::<ClientAddress>() {
        return *address;
    }
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |ConnectInfo(peer)| {
            peer.ip()
        })
}

/// The client a request came from, as the limits count it ([`client_of`]).
pub struct Client(pub ClientKey);

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Client, Self::Rejection> {
        Ok(Client(client_of(parts)))
    }
}

/// The client's address as limits and allow-lists see it, put on every request by
/// `http::serve` ([`forwarded_client`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub IpAddr);

/// The client behind `peer`: the peer itself, unless it is one of the `trusted` proxies
/// (`HERALD_TRUSTED_PROXIES`); then the right-most address of `X-Forwarded-For` that is not a
/// trusted proxy. A client can put anything at the left of that header, so nothing left of
/// the first untrusted address counts; an entry that is not an address stops the walk at the
/// trusted hop before it, which counts such requests under the proxy rather than under a name
/// the client chose.
pub fn forwarded_client(
    peer: IpAddr,
    headers: &axum::http::HeaderMap,
    trusted: &[ipnet::IpNet],
) -> IpAddr {
    let canonical = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(&ip));
    let peer = canonical(peer);
    if !is_trusted(peer) {
        return peer;
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for entry in entries.iter().rev() {
        let parsed = entry
            .parse::<IpAddr>()
            .or_else(|_| entry.parse::<SocketAddr>().map(|a| a.ip()))
            .map(canonical);
        let Ok(address) = parsed else {
            break;
        };
        client = address;
        if !is_trusted(address) {
            break;
        }
    }
    client
}

/// What a request's token turned out to be.
pub enum Credentials<T> {
    /// No token given.
    Missing,
    Operator,
    /// A live login token, with what the lookup found for it.
    Login(T),
    /// Neither: counted as a guess at the operator token.
    Wrong,
}

/// Put into a request by a layer (the pages' `web::session::browser_key`) so that a wrong token
/// counts as one guess however many extractors of that request check it (a page's visitor and
/// its project's owner, say); set once it was counted. The layer reads it to drop a wrong
/// operator cookie from the browser.
#[derive(Clone, Default)]
pub struct WrongTokenSeen(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl WrongTokenSeen {
    pub fn seen(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Where the operator token may be given: the pages also read the login page's cookie; the API
/// only the Authorization header.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TokenPlaces {
    Header,
    HeaderOrCookie,
}

fn too_many_guesses(wait: Duration) -> ApiError {
    ApiError::TooManyRequests(
        "too many wrong tokens from this address; try again later".into(),
        wait,
    )
}

/// Tells the operator from an account from a stranger, counting a wrong token against the client
/// address. `login` looks a bearer token up as a login token (it is `accounts`' to say). An
/// address past its limit is refused with 429 unless it shows a live login token, which says
/// nothing about the operator token.
pub async fn credentials<T, F, Fut>(
    parts: &Parts,
    state: &AppState,
    places: TokenPlaces,
    login: F,
) -> Result<Credentials<T>, ApiError>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Result<Option<T>, StoreError>>,
{
    let bearer = bearer_token(parts).filter(|t| !t.is_empty());
    let cookie = match places {
        TokenPlaces::Header => None,
        TokenPlaces::HeaderOrCookie => cookie(parts, ADMIN_COOKIE).filter(|t| !t.is_empty()),
    };
    if bearer.is_none() && cookie.is_none() {
        return Ok(Credentials::Missing);
    }
    let client = client_of(parts);
    let failures = &state.operator_token_failures;
    let seen = parts.extensions.get::<WrongTokenSeen>();
    // Counted already by another check of this request: not counted again, and so nothing
    // to give back.
    let again = seen.is_some_and(WrongTokenSeen::seen);
    let counted = if again {
        Ok(())
    } else {
        failures.acquire(&client, Instant::now())
    };
    if counted.is_ok()
        && [bearer, cookie]
            .into_iter()
            .flatten()
            .any(|t| is_operator_token(state, t))
    {
        if !again {
            failures.release(&client, Instant::now());
        }
        return Ok(Credentials::Operator);
    }
    if let Some(token) = bearer
        && let Some(found) = login(token.to_string()).await?
    {
        if counted.is_ok() && !again {
            failures.release(&client, Instant::now());
        }
        return Ok(Credentials::Login(found));
    }
    match counted {
        Ok(()) => {
            if let Some(seen) = seen {
                seen.0.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(Credentials::Wrong)
        }
        Err(wait) => Err(too_many_guesses(wait)),
    }
}

/// Checks a token typed into the login page, counted like [`credentials`]: `Ok(true)` for the
/// operator token, `Err` with how long to wait when the address has guessed too often.
pub fn check_typed_token(
    state: &AppState,
    client: ClientKey,
    given: &str,
) -> Result<bool, Duration> {
    let failures = &state.operator_token_failures;
    failures.acquire(&client, Instant::now())?;
    let right = is_operator_token(state, given);
    if right {
        failures.release(&client, Instant::now());
    }
    Ok(right)
}

fn is_operator_token(state: &AppState, given: &str) -> bool {
    state
        .settings
        .admin_token
        .as_ref()
        .is_some_and(|expected| constant_time_eq(given, expected.expose()))
}

impl<S> FromRequestParts<S> for Admin
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        if state.settings.admin_token.is_none() {
            return Err(ApiError::Unauthorized(
                "this API needs the operator token, and none is set: set HERALD_ADMIN_TOKEN".into(),
            ));
        }
        let db = state.db.clone();
        let is_live = state.login_token_is_live;
        let found = credentials(parts, &state, TokenPlaces::Header, |token| async move {
            Ok(is_live(&db, &token).await?.then_some(()))
        })
        .await?;
        match found {
            Credentials::Operator => Ok(Admin),
            Credentials::Login(()) | Credentials::Wrong => {
                Err(ApiError::Unauthorized("wrong token".into()))
            }
            Credentials::Missing => Err(ApiError::Unauthorized(
                "missing Authorization: Bearer <HERALD_ADMIN_TOKEN>".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> axum::http::HeaderMap {
        let mut map = axum::http::HeaderMap::new();
        for value in values {
            map.append("x-forwarded-for", value.parse().expect("header"));
        }
        map
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_forwarded_address() {
        let trusted: Vec<ipnet::IpNet> = vec![
            "10.0.0.0/8".parse().expect("net"),
            "127.0.0.1/32".parse().expect("net"),
        ];
        let proxy: IpAddr = "10.1.1.1".parse().expect("ip");
        let stranger: IpAddr = "198.51.100.9".parse().expect("ip");
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        // An untrusted peer is the client whatever it claims.
        assert_eq!(
            forwarded_client(stranger, &headers(&["1.2.3.4"]), &trusted),
            stranger
        );
        // Through proxies: the right-most untrusted entry; what the client wrote left of it
        // does not count.
        assert_eq!(
            forwarded_client(
                proxy,
                &headers(&["1.2.3.4, 203.0.113.5, 10.2.2.2"]),
                &trusted
            ),
            ip("203.0.113.5")
        );
        assert_eq!(
            forwarded_client(proxy, &headers(&["1.2.3.4", "203.0.113.5"]), &trusted),
            ip("203.0.113.5")
        );
        assert_eq!(
            forwarded_client(proxy, &headers(&["[2001:db8::1]:443"]), &trusted),
            ip("2001:db8::1")
        );
        // Garbage stops at the trusted hop; no header is the proxy itself.
        assert_eq!(
            forwarded_client(
                proxy,
                &headers(&["203.0.113.5, nonsense, 10.2.2.2"]),
                &trusted
            ),
            ip("10.2.2.2")
        );
        assert_eq!(forwarded_client(proxy, &headers(&[]), &trusted), proxy);
        // Without trusted proxies the header means nothing.
        assert_eq!(
            forwarded_client(proxy, &headers(&["203.0.113.5"]), &[]),
            proxy
        );
        // An IPv4-mapped peer is the IPv4 address.
        assert_eq!(
            forwarded_client(ip("::ffff:127.0.0.1"), &headers(&["203.0.113.7"]), &trusted),
            ip("203.0.113.7")
        );
    }
}
