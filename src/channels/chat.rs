//! herald's own chat as a notification channel: a notification becomes a direct message from the
//! `herald` bot account to the contact's account, stored like any DM and pushed to every socket
//! of that account. The bot needs no friendship to write.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use crate::chat::bus::Bus;
use crate::chat::{chat_payload, dm_chat_id, pair, store_message};
use crate::ids::IdGenerator;
use crate::outbox::channel::OutgoingMessage;
use crate::outbox::{Attempt, Channel, Verdict};
use crate::store::Db;

pub struct ChatChannel {
    db: Db,
    ids: Arc<IdGenerator>,
    bus: Arc<dyn Bus>,
    bot_id: i64,
}

impl ChatChannel {
    pub fn new(db: Db, ids: Arc<IdGenerator>, bus: Arc<dyn Bus>, bot_id: i64) -> Arc<ChatChannel> {
        Arc::new(ChatChannel {
            db,
            ids,
            bus,
            bot_id,
        })
    }

    async fn deliver(&self, message: OutgoingMessage<'_>) -> Attempt {
        let Ok(account_id) = message.destination.parse::<i64>() else {
            return Attempt::failed(Verdict::Permanent, None, None, "not an account id");
        };
        let Some(text) = serde_json::from_str::<Value>(message.payload)
            .ok()
            .and_then(|p| p.get("text").and_then(Value::as_str).map(str::to_string))
        else {
            return Attempt::failed(Verdict::Permanent, None, None, "payload has no text");
        };
        let exists: Result<Option<i64>, _> =
            sqlx::query_scalar("SELECT id FROM accounts WHERE id = $1")
                .bind(account_id)
                .fetch_optional(self.db.reader())
                .await;
        match exists {
            Ok(Some(_)) => {}
            Ok(None) => return Attempt::failed(Verdict::Gone, None, None, "no such account"),
            Err(e) => {
                return Attempt::failed(Verdict::Retry { after: None }, None, None, e.to_string());
            }
        }
        // The delivery id as nonce: a retry after a crash stores no second copy.
        let nonce = format!("delivery-{}", message.id);
        match store_message(
            &self.db,
            &self.ids,
            pair(self.bot_id, account_id),
            self.bot_id,
            &text,
            Some(&nonce),
        )
        .await
        {
            Ok((stored, _)) => {
                let frame = json!({"type": "chat", "payload": chat_payload("send", &stored, dm_chat_id(self.bot_id, account_id))});
                self.bus.publish(account_id, Arc::from(frame.to_string()));
                Attempt::delivered(None, None)
            }
            Err(e) => Attempt::failed(Verdict::Retry { after: None }, None, None, e.to_string()),
        }
    }
}

impl Channel for ChatChannel {
    fn name(&self) -> &'static str {
        "chat"
    }

    fn send<'a>(&'a self, message: OutgoingMessage<'a>) -> BoxFuture<'a, Attempt> {
        Box::pin(self.deliver(message))
    }
}
