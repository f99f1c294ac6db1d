-- How far each account has read each of its chats (chat's table): the `created_at_us` of the
-- newest message it has seen, per DM pair or room key (`low_id`, `high_id`, as in
-- chat_messages). Unread = later messages by others, counted on chat_messages_by_pair.
-- Kept in step with migrations/sqlite/0022_chat_reads.sql.

CREATE TABLE chat_reads (
    account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    low_id BIGINT NOT NULL,
    high_id BIGINT NOT NULL,
    read_up_to_us BIGINT NOT NULL,
    PRIMARY KEY (account_id, low_id, high_id)
);
