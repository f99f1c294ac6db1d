-- A number that changes whenever who hears of a push may have changed: subscriptions, the
-- contacts they point at, projects and their hooks. The push path keeps the subscribers and
-- hooks of each repository in memory and reads only this row to know they are still right
-- (watch::ingest::Routing); triggers bump it in the same transaction as the change, whoever
-- makes it. Twin of migrations/postgres/0011_routing_version.sql.
CREATE TABLE routing_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO routing_version (id, version) VALUES (1, 0);

CREATE TRIGGER subscriptions_routing_insert AFTER INSERT ON subscriptions
BEGIN UPDATE routing_version SET version = version + 1; END;
CREATE TRIGGER subscriptions_routing_update AFTER UPDATE ON subscriptions
BEGIN UPDATE routing_version SET version = version + 1; END;
CREATE TRIGGER subscriptions_routing_delete AFTER DELETE ON subscriptions
BEGIN UPDATE routing_version SET version = version + 1; END;

CREATE TRIGGER contacts_routing_update AFTER UPDATE OF id, channel, address, muted, blocked ON contacts
BEGIN UPDATE routing_version SET version = version + 1; END;
CREATE TRIGGER contacts_routing_delete AFTER DELETE ON contacts
BEGIN UPDATE routing_version SET version = version + 1; END;

CREATE TRIGGER webhooks_routing_insert AFTER INSERT ON webhooks
BEGIN UPDATE routing_version SET version = version + 1; END;
CREATE TRIGGER webhooks_routing_update AFTER UPDATE OF id, project_id, active ON webhooks
BEGIN UPDATE routing_version SET version = version + 1; END;
CREATE TRIGGER webhooks_routing_delete AFTER DELETE ON webhooks
BEGIN UPDATE routing_version SET version = version + 1; END;

CREATE TRIGGER projects_routing_update AFTER UPDATE ON projects
BEGIN UPDATE routing_version SET version = version + 1; END;
CREATE TRIGGER projects_routing_delete AFTER DELETE ON projects
BEGIN UPDATE routing_version SET version = version + 1; END;

CREATE TRIGGER repositories_routing_update AFTER UPDATE OF id, web_url ON repositories
BEGIN UPDATE routing_version SET version = version + 1; END;
