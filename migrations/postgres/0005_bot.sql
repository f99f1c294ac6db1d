-- Area D: the bot's per-contact conversation state and one-time codes that link a contact to an
-- account. Kept in step with migrations/sqlite/0005_bot.sql.

-- One row per contact that has talked to the bot: its language choice, the question the bot is
-- waiting for an answer to (JSON, '' = none) and until when that question stays open, and the
-- commands behind the last buttons offered (for platforms whose button payloads are short).
CREATE TABLE bot_sessions (
    contact_id BIGINT PRIMARY KEY REFERENCES contacts (id) ON DELETE CASCADE,
    lang TEXT NOT NULL DEFAULT '',
    pending TEXT NOT NULL DEFAULT '',
    offered TEXT NOT NULL DEFAULT '[]',
    expires_at BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL
);

-- A code shown to a signed-in account; a contact that sends `연결 <code>` becomes that account's.
-- Only a hash is stored; codes are single-use and expire.
CREATE TABLE link_codes (
    code_hash TEXT PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
