-- One body for many deliveries: an event fanned out to N receivers with the same payload (a
-- push to a project's webhooks) stores that payload once here instead of N times in
-- `deliveries`; such deliveries keep an empty `payload` and point here by `payload_id`.
-- Kept as long as the deliveries are (the attempt log keeps them all).
-- Twin of migrations/sqlite/0007_shared_payloads.sql.
CREATE TABLE delivery_payloads (
    id BIGINT PRIMARY KEY,
    body TEXT NOT NULL
);

ALTER TABLE deliveries ADD COLUMN payload_id BIGINT;
