-- Area E, the rest (issue 21). Twin of migrations/sqlite/0017_held_announcements_and_history.sql.
--
-- 1. A scheduled announcement to a contact inside its quiet hours is held for the contact's
--    digest like a push: `kind` says which a held item is. For an announcement, `event_id` is
--    the schedule run that held it, `repository` and `branch` are empty and `summary` is
--    {"message": …}.
ALTER TABLE digest_items ADD COLUMN kind TEXT NOT NULL DEFAULT 'push';

-- 2. History pruning (`retention`): each pruned table is deleted from by an indexed age.
--    seen_commits had no age: rows already there count as seen now (kept a full period).
ALTER TABLE seen_commits ADD COLUMN seen_at BIGINT NOT NULL DEFAULT 0;
UPDATE seen_commits SET seen_at = CAST(EXTRACT(EPOCH FROM now()) * 1000 AS BIGINT);
CREATE INDEX seen_commits_by_age ON seen_commits (seen_at);
CREATE INDEX schedule_runs_by_due ON schedule_runs (due_at);
CREATE INDEX team_mornings_by_due ON team_mornings (due_at);
CREATE INDEX auth_tokens_by_expiry ON auth_tokens (expires_at);
