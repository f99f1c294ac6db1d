-- Digest subscriptions and quiet hours (issue 21). A subscription's delivery mode and whether
-- it passes quiet hours; a contact's time zone and quiet time (contacts owns both tables);
-- and the notifications held for a digest (digest owns digest_items). Twin of
-- migrations/sqlite/0014_digests.sql.
ALTER TABLE subscriptions ADD COLUMN digest TEXT NOT NULL DEFAULT 'instant';
ALTER TABLE subscriptions ADD COLUMN urgent BIGINT NOT NULL DEFAULT 0;

ALTER TABLE contacts ADD COLUMN time_zone TEXT NOT NULL DEFAULT 'Asia/Seoul';
ALTER TABLE contacts ADD COLUMN quiet_hours TEXT;
ALTER TABLE contacts ADD COLUMN quiet_weekends BIGINT NOT NULL DEFAULT 0;

-- The push path caches who hears of a push with how (migration 0011): a contact's quiet time
-- changes that too.
CREATE TRIGGER contacts_quiet_routing AFTER UPDATE OF time_zone, quiet_hours, quiet_weekends
    ON contacts FOR EACH STATEMENT EXECUTE FUNCTION bump_routing_version();

-- A notification held for the digest of `contact_id` due at `due_at` (Unix ms); `summary` is
-- the push as the digest lists it (JSON). Removed in the transaction that queues its digest.
CREATE TABLE digest_items (
    id BIGINT PRIMARY KEY,
    contact_id BIGINT NOT NULL,
    due_at BIGINT NOT NULL,
    event_id BIGINT NOT NULL,
    repository TEXT NOT NULL,
    branch TEXT NOT NULL,
    summary TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
-- The next due time (MIN) and what is due, oldest first.
CREATE INDEX digest_items_by_due ON digest_items (due_at);
-- A claimed contact's due items.
CREATE INDEX digest_items_by_contact ON digest_items (contact_id, due_at);
