-- Most deliveries carry their payload inline (payload_id NULL): index only those that point at
-- a stored payload, so that every other insert skips the index write. The pruner's NOT EXISTS
-- (d.payload_id = p.id) uses it. Twin of migrations/sqlite/0009_partial_payload_index.sql.
DROP INDEX deliveries_by_payload;
CREATE INDEX deliveries_by_payload ON deliveries (payload_id) WHERE payload_id IS NOT NULL;
