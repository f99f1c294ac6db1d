-- A number that changes whenever who hears of a push may have changed: subscriptions, the
-- contacts they point at, projects and their hooks. The push path keeps the subscribers and
-- hooks of each repository in memory and reads only this row to know they are still right
-- (watch::ingest::Routing); triggers bump it in the same transaction as the change, whoever
-- makes it, on whichever node. Twin of migrations/sqlite/0011_routing_version.sql.
CREATE TABLE routing_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO routing_version (id, version) VALUES (1, 0);

CREATE FUNCTION bump_routing_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE routing_version SET version = version + 1;
    RETURN NULL;
END;
$$;

-- Per statement: a bulk change bumps once. TRUNCATE too, which row triggers would not see.
CREATE TRIGGER subscriptions_routing AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON subscriptions
    FOR EACH STATEMENT EXECUTE FUNCTION bump_routing_version();
CREATE TRIGGER contacts_routing AFTER UPDATE OF id, channel, address, muted, blocked OR DELETE OR TRUNCATE
    ON contacts FOR EACH STATEMENT EXECUTE FUNCTION bump_routing_version();
CREATE TRIGGER webhooks_routing AFTER INSERT OR UPDATE OF id, project_id, active OR DELETE OR TRUNCATE
    ON webhooks FOR EACH STATEMENT EXECUTE FUNCTION bump_routing_version();
CREATE TRIGGER projects_routing AFTER UPDATE OR DELETE OR TRUNCATE ON projects
    FOR EACH STATEMENT EXECUTE FUNCTION bump_routing_version();
CREATE TRIGGER repositories_routing AFTER UPDATE OF id, web_url OR TRUNCATE ON repositories
    FOR EACH STATEMENT EXECUTE FUNCTION bump_routing_version();
