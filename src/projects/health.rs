//! A hook's health, kept from what its deliveries met: a success clears its failure streak; a
//! 410 Gone, or failing for five days without a single success, disables it, cancels what was
//! still waiting for it and tells the project's owner by mail. Re-enabling it (the API, the
//! page) starts it over with a clean streak.
//!
//! `projects` owns the `webhooks` table, so this is where it is written. The delivery worker
//! does not know of hooks: it tells [`WebhookHealth`], an [`AttemptObserver`] given to it at
//! start-up, of every batch of attempts it records, and these writes join that batch's commit.

use futures_util::future::BoxFuture;

use crate::ids::IdGenerator;
use crate::outbox::{AttemptObserver, AttemptOutcome, NewDelivery, Verdict};
use crate::store::{Db, Script, StoreError};

/// A hook failing without a single success for this long is disabled.
pub const DISABLE_AFTER_FAILING_MS: i64 = 5 * 24 * 3600 * 1000;

/// Keeps hooks' health from the attempts the delivery worker records.
pub struct WebhookHealth;

impl AttemptObserver for WebhookHealth {
    fn add_to_batch(&self, script: &mut Script, outcomes: &[AttemptOutcome]) -> bool {
        let mut healthy: Vec<i64> = outcomes
            .iter()
            .filter(|o| o.verdict == Verdict::Delivered)
            .filter_map(|o| o.webhook_id)
            .collect();
        healthy.sort_unstable();
        healthy.dedup();
        if !healthy.is_empty() {
            let list = crate::store::placeholders(1, healthy.len());
            script.push(format!(
                "UPDATE webhooks SET failing_since = NULL WHERE failing_since IS NOT NULL AND id IN ({list})"
            ));
            for id in &healthy {
                script.bind(*id);
            }
        }
        // A failure's streak is read back after it is written, so it needs the transaction.
        outcomes.iter().any(|o| failed_hook(o).is_some())
    }

    fn after_script<'a>(
        &'a self,
        tx: &'a mut sqlx::AnyConnection,
        ids: &'a IdGenerator,
        outcomes: &'a [AttemptOutcome],
        now: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            for outcome in outcomes {
                if let Some(webhook_id) = failed_hook(outcome) {
                    track_failure(tx, ids, webhook_id, outcome.verdict, now).await?;
                }
            }
            Ok(())
        })
    }
}

/// The hook an attempt failed for, if it was a hook's and it failed.
fn failed_hook(outcome: &AttemptOutcome) -> Option<i64> {
    match outcome.verdict {
        Verdict::Delivered | Verdict::Deferred { .. } => None,
        Verdict::Retry { .. } | Verdict::Throttled { .. } | Verdict::Permanent | Verdict::Gone => {
            outcome.webhook_id
        }
    }
}

/// Starts or continues a hook's failure streak; a 410 Gone, or a streak of five days, disables
/// the hook.
async fn track_failure(
    tx: &mut sqlx::AnyConnection,
    ids: &IdGenerator,
    webhook_id: i64,
    verdict: Verdict,
    now: i64,
) -> Result<(), StoreError> {
    let reason = if verdict == Verdict::Gone {
        Some("the receiver answered 410 Gone")
    } else {
        sqlx::query(
            "UPDATE webhooks SET failing_since = $1 WHERE id = $2 AND failing_since IS NULL",
        )
        .bind(now)
        .bind(webhook_id)
        .execute(&mut *tx)
        .await?;
        let since: Option<i64> =
            sqlx::query_scalar("SELECT failing_since FROM webhooks WHERE id = $1")
                .bind(webhook_id)
                .fetch_optional(&mut *tx)
                .await?
                .flatten();
        since
            .filter(|since| now - since >= DISABLE_AFTER_FAILING_MS)
            .map(|_| "failing for five days without a successful delivery")
    };
    match reason {
        Some(reason) => disable(tx, ids, webhook_id, reason).await,
        None => Ok(()),
    }
}

/// Disables an active hook, cancels what was still waiting for it, and queues a mail to the
/// project's owner, all in `tx`. A hook that is already disabled is left as it is, so that
/// the answers of sends that were in flight when it was disabled do not mail its owner again.
async fn disable(
    tx: &mut sqlx::AnyConnection,
    ids: &IdGenerator,
    webhook_id: i64,
    reason: &str,
) -> Result<(), StoreError> {
    let disabled = sqlx::query(
        "UPDATE webhooks SET active = 0, disabled_reason = $1 WHERE id = $2 AND active = 1",
    )
    .bind(reason)
    .bind(webhook_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if disabled == 0 {
        return Ok(());
    }
    crate::outbox::cancel_for_webhook(tx, webhook_id).await?;
    tracing::warn!(webhook = webhook_id, reason, "webhook disabled");
    let owner: Option<(String, String, String, String)> = sqlx::query_as(
        "SELECT a.email, p.owner, p.name, w.payload_url FROM webhooks w \
         JOIN projects p ON p.id = w.project_id JOIN accounts a ON a.id = p.owner_account_id WHERE w.id = $1",
    )
    .bind(webhook_id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some((email, owner, project, url)) = owner {
        let mail = disabled_mail(webhook_id, reason, &owner, &project, &url);
        crate::outbox::enqueue(
            tx,
            ids,
            &[NewDelivery {
                channel: "email".into(),
                destination: email,
                payload: mail.to_string(),
                event_id: None,
                contact_id: None,
                webhook_id: None,
                event_type: Some("webhook_disabled".into()),
            }],
        )
        .await?;
    }
    Ok(())
}

/// The mail that tells a project's owner that one of its hooks was disabled, and how to bring
/// it back.
fn disabled_mail(
    webhook_id: i64,
    reason: &str,
    owner: &str,
    project: &str,
    url: &str,
) -> serde_json::Value {
    serde_json::json!({
        "subject": format!("[herald] webhook disabled on {owner}/{project}"),
        "text": format!(
            "The webhook to {url} of {owner}/{project} was disabled: {reason}.\n\n\
             Its waiting deliveries were cancelled. When the receiver works again, re-enable it \
             (PATCH /api/v1/projects/{owner}/{project}/webhooks/{webhook_id} with {{\"active\": true}}) \
             and recover what failed (POST …/webhooks/{webhook_id}/recover).\n\n— herald\n"
        ),
    })
}

/// Turns a hook on or off by hand. Either way its health starts over: no disable reason, no
/// failure streak.
pub async fn set_active(db: &Db, webhook_id: i64, active: bool) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE webhooks SET active = $1, disabled_reason = NULL, failing_since = NULL WHERE id = $2",
    )
    .bind(i64::from(active))
    .bind(webhook_id)
    .execute(db.writer())
    .await?;
    Ok(())
}
