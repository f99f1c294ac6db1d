//! Who may speak for a Kakao user. Kakao signs neither skill requests nor the legacy plus-friend
//! calls, and both name the user in the body, so whoever can reach these routes can act as any
//! Kakao user. Two checks close that, each applied when it is configured:
//!
//! - `HERALD_KAKAO_SKILL_SECRET`: a secret in the URL Kakao is given (any skill URL and any
//!   plus-friend base URL can hold one): the skill answers only at `/kakao/skill/<secret>`, the
//!   plus-friend API only under `/kakao/plusfriend/<secret>/…`; the bare routes then refuse.
//!   A skill may carry it in the `X-Herald-Kakao-Secret` header at `/kakao/skill` instead:
//!   Open Builder's skill settings send headers the bot maker enters ("헤더값 입력").
//! - `HERALD_KAKAO_ALLOWED_IPS`: the networks the legacy plus-friend API is taken from (Kakao
//!   published its proxies' addresses for that API). It does not apply to skills, whose
//!   senders Kakao does not publish.

use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::config::KakaoSettings;
use crate::crypto::constant_time_eq;
use crate::http::error::ApiError;
use crate::ids::now_ms;

/// Which door a Kakao request came through.
pub enum Door<'a> {
    /// `/kakao/skill` or the bare `/plusfriend/*`: no secret given.
    Bare,
    /// A route with a secret in its path.
    WithSecret(&'a str),
    /// The bare skill route with the secret in the `X-Herald-Kakao-Secret` header.
    Header(&'a str),
}

/// Checks the secret of a request to the skill or the plus-friend API (`what` names it in the
/// answers and the log).
pub fn check_secret(settings: &KakaoSettings, door: Door<'_>, what: &str) -> Result<(), ApiError> {
    match (&settings.skill_secret, door) {
        // Without a secret configured, a header says nothing: the route is open anyway.
        (None, Door::Bare | Door::Header(_)) => Ok(()),
        // Without a secret configured, the secret routes do not exist.
        (None, Door::WithSecret(_)) => Err(ApiError::NotFound("no such route".into())),
        (Some(secret), Door::WithSecret(given)) => {
            if constant_time_eq(given, secret.expose()) {
                Ok(())
            } else {
                hint(what, "with a wrong secret");
                Err(ApiError::Forbidden(format!(
                    "the {what} secret in the URL is wrong"
                )))
            }
        }
        (Some(secret), Door::Header(given)) => {
            if constant_time_eq(given, secret.expose()) {
                Ok(())
            } else {
                hint(what, "with a wrong secret header");
                Err(ApiError::Forbidden(format!(
                    "the {what} secret in the X-Herald-Kakao-Secret header is wrong"
                )))
            }
        }
        (Some(_), Door::Bare) => {
            hint(what, "without the secret");
            Err(ApiError::Forbidden(format!(
                "this herald takes {what} requests only at the URL that carries its secret \
                 (HERALD_KAKAO_SKILL_SECRET is set); see docs/bot.md"
            )))
        }
    }
}

/// Checks the source address of a legacy plus-friend request against the allow-list.
pub fn check_source(settings: &KakaoSettings, client: IpAddr) -> Result<(), ApiError> {
    let client = match client {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
        v4 => v4,
    };
    if settings.allowed_ips.is_empty() || settings.allowed_ips.iter().any(|n| n.contains(&client)) {
        return Ok(());
    }
    hint_source(client);
    Err(ApiError::Forbidden(
        "this address may not call the plus-friend API (HERALD_KAKAO_ALLOWED_IPS)".into(),
    ))
}

/// When a refusal was last logged; refusals are logged at most once a minute, so that a
/// stranger's requests cannot fill the log, while a misconfigured Kakao URL is still noticed.
static LAST_HINT_MS: AtomicI64 = AtomicI64::new(0);
const HINT_EVERY_MS: i64 = 60_000;

fn may_log() -> bool {
    let now = now_ms();
    let last = LAST_HINT_MS.load(Ordering::Relaxed);
    now - last >= HINT_EVERY_MS
        && LAST_HINT_MS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

fn hint(what: &str, how: &str) {
    if may_log() {
        tracing::warn!(
            "refused a Kakao {what} request {how}: if it came from Kakao, the URL set in Kakao \
             must carry HERALD_KAKAO_SKILL_SECRET (skill: https://<herald>/kakao/skill/<secret>, \
             or the X-Herald-Kakao-Secret header; plus-friend: https://<herald>/kakao/plusfriend/<secret>); see docs/bot.md \
             (further refusals within a minute are not logged)"
        );
    }
}

fn hint_source(client: IpAddr) {
    if may_log() {
        tracing::warn!(
            %client,
            "refused a plus-friend request from an address outside HERALD_KAKAO_ALLOWED_IPS; \
             if it came from Kakao, add its address (behind a reverse proxy, also set \
             HERALD_TRUSTED_PROXIES) (further refusals within a minute are not logged)"
        );
    }
}
