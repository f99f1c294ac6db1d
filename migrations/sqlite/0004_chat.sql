-- Area C: friendships and chat messages. Kept in step with migrations/postgres/0004_chat.sql.
-- A DM is stored under its unordered pair (low id, high id), never under the XOR id clients
-- use, so two pairs whose XOR collides can never see each other's messages.

CREATE TABLE friendships (
    requester_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    addressee_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    accepted INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (requester_id, addressee_id)
);
CREATE INDEX friendships_by_addressee ON friendships (addressee_id);

CREATE TABLE chat_messages (
    id INTEGER PRIMARY KEY,
    low_id INTEGER NOT NULL,
    high_id INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    content TEXT NOT NULL,
    created_at_us INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    nonce TEXT
);
-- A client nonce makes a send idempotent: the same nonce from the same user is one message.
CREATE UNIQUE INDEX chat_messages_by_nonce ON chat_messages (user_id, nonce);
CREATE INDEX chat_messages_by_pair ON chat_messages (low_id, high_id, created_at_us);

-- Group rooms ("guilds"). Their messages live in chat_messages with low_id = room id and
-- high_id = -1, which no DM pair can have.
CREATE TABLE rooms (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    created_by INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE room_members (
    room_id INTEGER NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    joined_at INTEGER NOT NULL,
    PRIMARY KEY (room_id, account_id)
);
CREATE INDEX room_members_by_account ON room_members (account_id);
