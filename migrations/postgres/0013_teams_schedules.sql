-- Area E: teams with their members, scheduled announcements and each announcement's runs.
-- Kept in step with migrations/sqlite/0013_teams_schedules.sql. Times are Unix ms, flags 0/1,
-- lists JSON text.

CREATE TABLE teams (
    id BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    time_zone TEXT NOT NULL,
    morning_at TEXT NOT NULL,
    -- The next working morning (Unix ms) at which the team is told who is away or celebrating.
    next_morning_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX teams_morning_due ON teams (next_morning_at);

-- A member is an account, a contact, or both (an account's linked contacts are told too).
CREATE TABLE team_members (
    id BIGINT PRIMARY KEY,
    team_id BIGINT NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    account_id BIGINT REFERENCES accounts (id) ON DELETE CASCADE,
    contact_id BIGINT REFERENCES contacts (id) ON DELETE CASCADE,
    admin BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    UNIQUE (team_id, account_id),
    UNIQUE (team_id, contact_id)
);
CREATE INDEX team_members_by_team ON team_members (team_id);
CREATE INDEX team_members_by_account ON team_members (account_id);
CREATE INDEX team_members_by_contact ON team_members (contact_id);

-- A member's days ("tgday"): a day off, a half day, an anniversary, a birthday …, from one
-- local date to another (YYYY-MM-DD, both included).
CREATE TABLE team_days (
    id BIGINT PRIMARY KEY,
    team_id BIGINT NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    member_id BIGINT NOT NULL REFERENCES team_members (id) ON DELETE CASCADE,
    from_day TEXT NOT NULL,
    to_day TEXT NOT NULL,
    kind TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL
);
CREATE INDEX team_days_by_team ON team_days (team_id, from_day);

-- One row per team and local date whose morning was handled (sent, nothing to say, or too
-- late): inserted before anything is sent, so a morning is told once across nodes.
CREATE TABLE team_mornings (
    team_id BIGINT NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    day TEXT NOT NULL,
    due_at BIGINT NOT NULL,
    fired_at BIGINT,
    recipients TEXT NOT NULL,
    PRIMARY KEY (team_id, day)
);

-- next_due_at is the first due time not yet handled, NULL while disabled; the scheduler sleeps
-- until the smallest one (the index), never scanning the table.
CREATE TABLE schedules (
    id BIGINT PRIMARY KEY,
    owner_account_id BIGINT REFERENCES accounts (id) ON DELETE CASCADE,
    team_id BIGINT REFERENCES teams (id) ON DELETE CASCADE,
    cron TEXT NOT NULL,
    time_zone TEXT NOT NULL,
    message TEXT NOT NULL,
    audience TEXT NOT NULL,
    channels TEXT,
    catch_up_limit_ms BIGINT NOT NULL,
    enabled BIGINT NOT NULL,
    urgent BIGINT NOT NULL DEFAULT 0,
    next_due_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_due_at);
CREATE INDEX schedules_by_owner ON schedules (owner_account_id);
CREATE INDEX schedules_by_team ON schedules (team_id);

-- One row per (schedule, due time): inserted before anything is sent, so a due time fires once
-- whichever node gets there first. fired_at is NULL for a run skipped as too late.
CREATE TABLE schedule_runs (
    id BIGINT PRIMARY KEY,
    schedule_id BIGINT NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    due_at BIGINT NOT NULL,
    fired_at BIGINT,
    recipients TEXT NOT NULL,
    UNIQUE (schedule_id, due_at)
);
