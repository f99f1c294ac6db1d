//! The herald bot in chat: a DM to the bot account goes to the bot engine, and the answer comes
//! back as a DM from the bot through the delivery queue (stored, then pushed to every socket of
//! the account). Buttons become a list of commands to type, since chat messages are text.

use serde_json::json;

use super::ChatState;
use crate::accounts::Account;
use crate::bot::Incoming;
use crate::bot::deliver::{queue_replies, reply_delivery};

/// Answers a DM the account `me` sent to the bot (message `message_id`), in the background: the
/// sender's own frame has already been acknowledged.
pub fn answer(state: ChatState, me: Account, message_id: i64, text: String) {
    tokio::spawn(async move {
        let address = me.id.to_string();
        let answered = async {
            let answer = crate::bot::converse(
                &state.bot,
                Incoming {
                    channel: "chat",
                    address: &address,
                    nick_name: &me.name,
                    text: &text,
                },
            )
            .await?;
            let key = message_id.to_string();
            queue_replies(
                &state,
                Some(("chat", &key)),
                vec![reply_delivery(
                    "chat",
                    &address,
                    answer.contact.id,
                    json!({"text": answer.reply.as_plain_text(answer.lang)}),
                )],
            )
            .await
        }
        .await;
        if let Err(error) = answered {
            tracing::error!(%error, account = me.id, "the bot could not answer a chat message");
        }
    });
}

/// How far back a restarted node looks for DMs to the bot that were stored but not answered
/// (the node stopped between storing a message and queueing its answer).
const MISSED_WINDOW_US: i64 = 10 * 60 * 1_000_000;

/// Answers DMs to the bot that were acknowledged but never answered, e.g. because the process
/// was killed in between; run at start. A message already answered is recognised by its id.
pub async fn answer_missed(state: ChatState) {
    let since = crate::chat::now_micros() - MISSED_WINDOW_US;
    // The bot account is made at first start, before anyone can sign up, so its id is the lower
    // one of every DM pair it is in: `low_id` (indexed) finds them.
    let missed: Result<Vec<(i64, i64, String)>, _> = sqlx::query_as(
        "SELECT m.id, m.user_id, m.content FROM chat_messages m \
         WHERE m.low_id = $1 AND m.high_id <> -1 AND m.user_id <> $1 AND m.deleted = 0 \
         AND m.created_at_us > $2 AND NOT EXISTS (SELECT 1 FROM inbound_deliveries d \
         WHERE d.source = 'chat' AND d.delivery_id = CAST(m.id AS TEXT)) ORDER BY m.id",
    )
    .bind(state.bot_account_id)
    .bind(since)
    .fetch_all(state.db.reader())
    .await;
    let missed = match missed {
        Ok(missed) => missed,
        Err(error) => {
            tracing::warn!(%error, "could not look for unanswered DMs to the bot");
            return;
        }
    };
    for (message_id, author, content) in missed {
        match crate::chat::account_by_id(&state.db, author).await {
            Ok(Some(account)) => answer(state.clone(), account, message_id, content),
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "could not read a DM's author"),
        }
    }
}
