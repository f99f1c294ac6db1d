-- Area C: friendships and chat messages. Kept in step with migrations/sqlite/0004_chat.sql.
-- A DM is stored under its unordered pair (low id, high id), never under the XOR id clients
-- use, so two pairs whose XOR collides can never see each other's messages.

CREATE TABLE friendships (
    requester_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    addressee_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    accepted BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (requester_id, addressee_id)
);
CREATE INDEX friendships_by_addressee ON friendships (addressee_id);

CREATE TABLE chat_messages (
    id BIGINT PRIMARY KEY,
    low_id BIGINT NOT NULL,
    high_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    content TEXT NOT NULL,
    created_at_us BIGINT NOT NULL,
    deleted BIGINT NOT NULL DEFAULT 0,
    nonce TEXT
);
-- A client nonce makes a send idempotent: the same nonce from the same user is one message.
CREATE UNIQUE INDEX chat_messages_by_nonce ON chat_messages (user_id, nonce);
CREATE INDEX chat_messages_by_pair ON chat_messages (low_id, high_id, created_at_us);

-- Group rooms ("guilds"). Their messages live in chat_messages with low_id = room id and
-- high_id = -1, which no DM pair can have.
CREATE TABLE rooms (
    id BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    created_by BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE room_members (
    room_id BIGINT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    joined_at BIGINT NOT NULL,
    PRIMARY KEY (room_id, account_id)
);
CREATE INDEX room_members_by_account ON room_members (account_id);
