-- Pruning finished deliveries after HERALD_DELIVERY_RETENTION (outbox::retention): a stored
-- payload goes when no delivery points at it any more, and inbound delivery ids go by age.
-- Twin of migrations/postgres/0008_retention.sql.
CREATE INDEX deliveries_by_payload ON deliveries (payload_id);
CREATE INDEX inbound_deliveries_by_age ON inbound_deliveries (received_at);
