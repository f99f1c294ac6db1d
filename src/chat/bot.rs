//! The herald bot in chat: a DM to the bot account goes to the bot engine, and the answer comes
//! back as a DM from the bot through the delivery queue (stored, then pushed to every socket of
//! the account). Buttons become a list of commands to type, since chat messages are text.

use serde_json::json;

use crate::accounts::Account;
use crate::bot::Incoming;
use crate::connectors::{queue_replies, reply_delivery};
use crate::state::AppState;

/// Answers a DM the account `me` sent to the bot (message `message_id`), in the background: the
/// sender's own frame has already been acknowledged.
pub fn answer(state: AppState, me: Account, message_id: i64, text: String) {
    tokio::spawn(async move {
        let address = me.id.to_string();
        let answered = async {
            let answer = crate::bot::converse(
                &state,
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
