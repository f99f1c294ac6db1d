//! The decisions of a batch, push by push in arrival order (each seeing the ones before it),
//! and every write they call for, added to one script.

use super::fanout::{Planned, plan_notifications};
use super::known::{Known, fresh_inbound};
use super::{Applied, IngestOutcome, Job, PushState};
use crate::ids::now_ms;
use crate::outbox;
use crate::store::{self, ROWS_PER_STATEMENT, Script, StoreError};
use crate::watch::event::PushEvent;

/// Applies a batch of pushes inside the caller's transaction, in arrival order, with a fixed
/// number of statements per batch rather than per push: the order-dependent decisions (is this
/// head already known, was this commit announced, by the database or by an earlier push of
/// the same batch) are made in memory from what [`super::known::read_known`] found, then every push's
/// writes go out together.
pub(super) fn apply(
    script: &mut Script,
    state: &PushState,
    batch: &[Job],
    known: Known,
) -> Result<Applied, StoreError> {
    let mut outcomes = vec![IngestOutcome::Duplicate; batch.len()];
    let now = now_ms();
    let alive = fresh_inbound(batch, &known.inbound);
    let Known {
        inbound: _,
        mut heads,
        mut seen,
        routing,
    } = known;

    // 1. The decisions, push by push, each seeing the ones before it.
    let mut accepted: Vec<(usize, PushEvent, i64)> = Vec::new();
    let mut new_commits: Vec<(i64, String, String)> = Vec::new();
    let mut changed_heads: Vec<(i64, String)> = Vec::new();
    for (i, job) in batch.iter().enumerate() {
        if !alive[i] {
            continue;
        }
        let repository = &job.repository;
        let mut event = job.event.clone();
        let key = (repository.id, event.branch().to_string());
        let known_head = heads.get(&key).cloned().flatten();
        if !event.deleted && known_head.as_deref() == Some(event.after.as_str()) {
            continue;
        }
        if event.deleted
            && known_head.is_none()
            && event.commits.is_empty()
            && job.inbound.is_none()
        {
            continue;
        }
        event.commits.retain(|commit| {
            let key = (repository.id, event.ref_name.clone(), commit.id.clone());
            let fresh = seen.insert(key.clone());
            if fresh {
                new_commits.push(key);
            }
            fresh
        });
        if event.commits.is_empty() && !event.forced && !event.created && !event.deleted {
            continue;
        }
        let head = (!event.deleted).then(|| event.after.clone());
        heads.insert(key.clone(), head);
        if !changed_heads.contains(&key) {
            changed_heads.push(key);
        }
        if event.compare.is_none() && !event.created && !event.deleted {
            event.compare = repository.url.compare_url(&event.before, &event.after);
        }
        accepted.push((i, event, state.ids.next()));
    }

    // 2. The writes: inbound ids, announced commits, heads, events.
    let inbound: Vec<(&str, &str)> = batch
        .iter()
        .zip(&alive)
        .filter(|(_, alive)| **alive)
        .filter_map(|(job, _)| job.inbound.as_ref())
        .map(|(source, id)| (source.as_str(), id.as_str()))
        .collect();
    crate::inbound::record_into(script, &inbound, now);
    for chunk in new_commits.chunks(ROWS_PER_STATEMENT) {
        script.push(format!(
            "INSERT INTO seen_commits (repository_id, ref, sha, seen_at) VALUES {}",
            store::values_rows(chunk.len(), 4)
        ));
        for (repository, ref_name, sha) in chunk {
            script
                .bind(*repository)
                .bind(ref_name.as_str())
                .bind(sha.as_str())
                .bind(now);
        }
    }
    let (moved, removed): (Vec<_>, Vec<_>) = changed_heads
        .iter()
        .map(|key| (key, heads.get(key).cloned().flatten()))
        .partition(|(_, head)| head.is_some());
    let moved: Vec<(i64, &str, &str)> = moved
        .iter()
        .filter_map(|((repository, branch), head)| {
            head.as_deref()
                .map(|sha| (*repository, branch.as_str(), sha))
        })
        .collect();
    let removed: Vec<(i64, &str)> = removed
        .iter()
        .map(|((repository, branch), _)| (*repository, branch.as_str()))
        .collect();
    crate::watch::write_heads_into(script, &moved, &removed, now);
    let mut payloads = Vec::with_capacity(accepted.len());
    for (_, event, _) in &accepted {
        payloads
            .push(serde_json::to_string(event).map_err(|e| StoreError::Protocol(e.to_string()))?);
    }
    let rows: Vec<(&(usize, PushEvent, i64), &String)> = accepted.iter().zip(&payloads).collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT / 2) {
        script.push(format!(
            "INSERT INTO push_events (id, repository_id, ref, before_sha, after_sha, forced, source, \
             payload, created_at) VALUES {}",
            store::values_rows(chunk.len(), 9)
        ));
        for ((i, event, event_id), payload) in chunk {
            script
                .bind(*event_id)
                .bind(batch[*i].repository.id)
                .bind(event.ref_name.as_str())
                .bind(event.before.as_str())
                .bind(event.after.as_str())
                .bind(i64::from(event.forced))
                .bind(event.source.as_str())
                .bind(payload.as_str())
                .bind(now);
        }
    }

    // 3. The deliveries of every push, queued together; notifications that wait for a digest
    // are held (quiet hours and digest times are calendar time: the shared clock's).
    let mut deliveries = Vec::new();
    let mut held = Vec::new();
    let clock_now = state.clock.now_ms();
    for (i, event, event_id) in &accepted {
        let repository = &batch[*i].repository;
        let routing = routing.get(&repository.id);
        let Planned {
            deliveries: mut planned,
            held: mut held_now,
        } = plan_notifications(
            &repository.url.display_name(),
            event,
            *event_id,
            routing.map_or(&[][..], |r| r.subscribers.as_slice()),
            clock_now,
        );
        held.append(&mut held_now);
        let notifications = planned.len();
        planned.extend(crate::projects::plan_webhook_deliveries(
            routing.map_or(&[][..], |r| r.hooks.as_slice()),
            repository.id,
            event,
            *event_id,
        ));
        deliveries.extend(planned);
        outcomes[*i] = IngestOutcome::Accepted {
            event_id: *event_id,
            notifications,
        };
    }
    crate::digest::hold_into(script, &state.ids, &held, now);
    let queued = deliveries.len();
    let leased = outbox::enqueue_local_first(script, &state.ids, &state.local_queue, deliveries);
    Ok(Applied {
        outcomes,
        queued,
        leased,
        held: held.len(),
    })
}
