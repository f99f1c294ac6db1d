//! The frames a chat client sends, parsed once at the edge into [`ClientFrame`].
//!
//! The reference protocol answers every bad frame with an `error` frame whose reason names the
//! field and what is wrong with it ("missing field chat_id", "chat_id is not an id", …), and a
//! handler checks its fields in a fixed order, some only after a database read. So a payload is
//! not refused as a whole by serde: each field becomes a [`Field`] that remembers whether it was
//! absent, unusable or usable, and the handler asks for it with [`Field::required`] at the point
//! where the protocol has always reported it. The reasons stay exactly what clients have seen.

use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer};
use serde_json::Value;

/// A client frame: `{"type": …, "payload": …}`.
#[derive(Debug)]
pub enum ClientFrame {
    /// Echoed back as it came.
    Heartbeat(Value),
    Auth(AuthIn),
    Resume(ResumeIn),
    /// Everything else, which needs an authenticated socket.
    Request(Request),
}

#[derive(Debug)]
pub enum Request {
    Chat(ChatIn),
    Load(LoadIn),
    MutualUsers(MutualUsersIn),
    Typing(TypingIn),
    Room(RoomIn),
    Read(ReadIn),
    /// `type` is missing, empty or not a string.
    Untyped,
    Unknown(String),
}

/// Text that is not JSON at all.
#[derive(Debug)]
pub struct NotJson(pub serde_json::Error);

impl ClientFrame {
    pub fn parse(text: &str) -> Result<ClientFrame, NotJson> {
        let frame: Value = serde_json::from_str(text).map_err(NotJson)?;
        Ok(ClientFrame::from_value(frame))
    }

    fn from_value(mut frame: Value) -> ClientFrame {
        let payload = frame
            .get_mut("payload")
            .map(Value::take)
            .unwrap_or(Value::Null);
        match frame
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
        {
            "heartbeat" => ClientFrame::Heartbeat(payload),
            "auth" => ClientFrame::Auth(fields(payload)),
            "resume" => ClientFrame::Resume(fields(payload)),
            "chat" => ClientFrame::Request(Request::Chat(fields(payload))),
            "load" => ClientFrame::Request(Request::Load(fields(payload))),
            "mutual_users" => ClientFrame::Request(Request::MutualUsers(fields(payload))),
            "typing" => ClientFrame::Request(Request::Typing(fields(payload))),
            "room" => ClientFrame::Request(Request::Room(fields(payload))),
            "read" => ClientFrame::Request(Request::Read(fields(payload))),
            "" => ClientFrame::Request(Request::Untyped),
            other => ClientFrame::Request(Request::Unknown(other.to_string())),
        }
    }
}

/// A payload's fields. A payload that is not an object has none of them; a field of the wrong
/// JSON type is kept as [`Field::Invalid`], so this never fails.
fn fields<T: DeserializeOwned + Default>(payload: Value) -> T {
    if !payload.is_object() {
        return T::default();
    }
    serde_json::from_value(payload).unwrap_or_else(|error| {
        // Every field type accepts any JSON value; reaching this is a bug in this module.
        tracing::error!(%error, "a chat payload did not fit its lenient field types");
        T::default()
    })
}

/// One field of a payload as the client sent it.
#[derive(Debug, Default)]
pub enum Field<T> {
    #[default]
    Missing,
    /// Present, but not of the field's kind.
    Invalid,
    Given(T),
}

/// What a field may hold, read from a JSON value.
pub trait FieldKind: Sized {
    fn from_json(value: Value) -> Option<Self>;
    /// The reason a client is given for a value of the wrong kind in field `name`.
    fn invalid(name: &str) -> String;
}

impl<T: FieldKind> Field<T> {
    /// The value, or the reason to refuse the frame.
    pub fn required(self, name: &str) -> Result<T, String> {
        match self {
            Field::Given(value) => Ok(value),
            Field::Invalid => Err(T::invalid(name)),
            Field::Missing => Err(format!("missing field {name}")),
        }
    }

    /// The value, if one of the right kind was given.
    pub fn ok(self) -> Option<T> {
        match self {
            Field::Given(value) => Some(value),
            Field::Missing | Field::Invalid => None,
        }
    }
}

impl<'de, T: FieldKind> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match T::from_json(Value::deserialize(deserializer)?) {
            Some(value) => Field::Given(value),
            None => Field::Invalid,
        })
    }
}

impl FieldKind for String {
    fn from_json(value: Value) -> Option<Self> {
        match value {
            Value::String(text) => Some(text),
            _ => None,
        }
    }

    fn invalid(name: &str) -> String {
        format!("{name} must be a string")
    }
}

/// A snowflake id, which clients send as a string (they exceed JavaScript's integers) or number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Id(pub i64);

impl FieldKind for Id {
    fn from_json(value: Value) -> Option<Self> {
        match value {
            Value::String(text) => text.trim().parse().ok().map(Id),
            Value::Number(number) => number.as_i64().map(Id),
            _ => None,
        }
    }

    fn invalid(name: &str) -> String {
        format!("{name} is not an id")
    }
}

/// A whole JSON number within `i64` (no string, no fraction).
#[derive(Debug, Clone, Copy)]
pub struct Integer(pub i64);

impl FieldKind for Integer {
    fn from_json(value: Value) -> Option<Self> {
        value.as_i64().map(Integer)
    }

    fn invalid(name: &str) -> String {
        format!("{name} must be a number")
    }
}

/// A whole JSON number from zero up.
#[derive(Debug, Clone, Copy)]
pub struct Count(pub u64);

impl FieldKind for Count {
    fn from_json(value: Value) -> Option<Self> {
        value.as_u64().map(Count)
    }

    fn invalid(name: &str) -> String {
        format!("{name} must be a number")
    }
}

/// A sub-type word (`"send"`, `"create"`, …): known ones as a variant, others kept for the reason.
pub trait Word: Sized {
    fn from_word(word: String) -> Self;
}

/// A field holding a word of `W`.
#[derive(Debug)]
pub struct Kind<W>(pub W);

impl<W: Word> FieldKind for Kind<W> {
    fn from_json(value: Value) -> Option<Self> {
        String::from_json(value).map(|word| Kind(W::from_word(word)))
    }

    fn invalid(name: &str) -> String {
        String::invalid(name)
    }
}

macro_rules! words {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $word:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum $name {
            $($variant,)*
            Other(String),
        }

        impl Word for $name {
            fn from_word(word: String) -> Self {
                match word.as_str() {
                    $($word => $name::$variant,)*
                    _ => $name::Other(word),
                }
            }
        }
    };
}

words!(
    /// `chat` frames: a new message, or a change to one's own.
    ChatKind { Send = "send", Edit = "edit" }
);
words!(
    /// `load` frames: history of a chat, or the friend list.
    LoadKind { Chat = "chat", MutualUsers = "mutual_users" }
);
words!(
    /// `mutual_users` frames: the friendship operations.
    FriendKind { Request = "request", Response = "response", Remove = "remove", Delete = "delete" }
);
words!(
    /// `room` frames: group rooms.
    RoomKind { Create = "create", Invite = "invite", Leave = "leave", Members = "members" }
);

impl FriendKind {
    /// The word as the client sent it, for the frame the other user gets.
    pub fn word(&self) -> &str {
        match self {
            FriendKind::Request => "request",
            FriendKind::Response => "response",
            FriendKind::Remove => "remove",
            FriendKind::Delete => "delete",
            FriendKind::Other(word) => word,
        }
    }
}

/// A `send`'s optional nonce: absent (or `null`), or whatever else the client put there.
#[derive(Debug, Default)]
pub enum Nonce {
    #[default]
    Absent,
    Given(Value),
}

impl<'de> Deserialize<'de> for Nonce {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Value::deserialize(deserializer)? {
            Value::Null => Nonce::Absent,
            value => Nonce::Given(value),
        })
    }
}

impl Nonce {
    /// The nonce, if one was given; a nonce must be a string of 1 to 100 bytes.
    pub fn checked(&self) -> Result<Option<&str>, String> {
        match self {
            Nonce::Absent => Ok(None),
            Nonce::Given(Value::String(nonce)) if !nonce.is_empty() && nonce.len() <= 100 => {
                Ok(Some(nonce))
            }
            Nonce::Given(_) => Err("nonce must be a string of 1 to 100 characters".into()),
        }
    }
}

/// A room's `members`: absent (none), a list (its strings are the names), or something else.
#[derive(Debug, Default)]
pub enum Members {
    #[default]
    Absent,
    Names(Vec<String>),
    Invalid,
}

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Value::deserialize(deserializer)? {
            Value::Array(items) => {
                Members::Names(items.into_iter().filter_map(String::from_json).collect())
            }
            _ => Members::Invalid,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct AuthIn {
    #[serde(default)]
    pub auth: Field<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ResumeIn {
    #[serde(default)]
    pub session: Field<String>,
    #[serde(default)]
    pub auth: Field<String>,
    #[serde(default)]
    pub last_seq: Field<Count>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ChatIn {
    #[serde(rename = "type", default)]
    pub kind: Field<Kind<ChatKind>>,
    #[serde(default)]
    pub chat_id: Field<Id>,
    #[serde(default)]
    pub content: Field<String>,
    /// The message an `edit` changes.
    #[serde(default)]
    pub id: Field<Id>,
    #[serde(default)]
    pub nonce: Nonce,
}

#[derive(Debug, Default, Deserialize)]
pub struct LoadIn {
    #[serde(rename = "type", default)]
    pub kind: Field<Kind<LoadKind>>,
    #[serde(default)]
    pub load_id: Field<Id>,
    /// base64 of `YYYY-MM-DD HH:MM:SS.ffffff`.
    #[serde(default)]
    pub datetime: Field<String>,
    #[serde(default)]
    pub count: Field<Integer>,
}

#[derive(Debug, Default, Deserialize)]
pub struct MutualUsersIn {
    #[serde(rename = "type", default)]
    pub kind: Field<Kind<FriendKind>>,
    #[serde(default)]
    pub name: Field<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct TypingIn {
    #[serde(default)]
    pub chat_id: Field<Id>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RoomIn {
    #[serde(rename = "type", default)]
    pub kind: Field<Kind<RoomKind>>,
    #[serde(default)]
    pub name: Field<String>,
    #[serde(default)]
    pub members: Members,
    #[serde(default)]
    pub room_id: Field<Id>,
}

/// `read` (a herald addition): the client showed the chat up to this message.
#[derive(Debug, Default, Deserialize)]
pub struct ReadIn {
    #[serde(default)]
    pub chat_id: Field<Id>,
    #[serde(default)]
    pub message_id: Field<Id>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(text: &str) -> ChatIn {
        match ClientFrame::parse(text) {
            Ok(ClientFrame::Request(Request::Chat(chat))) => chat,
            other => panic!("not a chat frame: {other:?}"),
        }
    }

    #[test]
    fn fields_say_what_is_wrong_with_them_in_the_reference_words() {
        let frame = chat(r#"{"type":"chat","payload":{"type":"send","chat_id":"abc"}}"#);
        assert_eq!(
            frame.chat_id.required("chat_id").unwrap_err(),
            "chat_id is not an id"
        );
        assert_eq!(
            frame.content.required("content").unwrap_err(),
            "missing field content"
        );
        let frame = chat(r#"{"type":"chat","payload":{"type":5,"chat_id":" 42 ","content":null}}"#);
        assert_eq!(
            frame.kind.required("type").unwrap_err(),
            "type must be a string"
        );
        assert_eq!(frame.chat_id.required("chat_id"), Ok(Id(42)));
        assert_eq!(
            frame.content.required("content").unwrap_err(),
            "content must be a string"
        );
        let frame = chat(r#"{"type":"chat","payload":{"type":"shout","chat_id":7}}"#);
        assert!(matches!(frame.kind.ok(), Some(Kind(ChatKind::Other(word))) if word == "shout"));
    }

    #[test]
    fn a_payload_that_is_no_object_has_no_fields_and_the_envelope_is_read_leniently() {
        let frame = chat(r#"{"type":"chat","payload":[1,2]}"#);
        assert_eq!(
            frame.kind.required("type").unwrap_err(),
            "missing field type"
        );
        assert!(matches!(
            ClientFrame::parse("[1]"),
            Ok(ClientFrame::Request(Request::Untyped))
        ));
        assert!(matches!(
            ClientFrame::parse(r#"{"type":3}"#),
            Ok(ClientFrame::Request(Request::Untyped))
        ));
        assert!(matches!(
            ClientFrame::parse(r#"{"type":"dance"}"#),
            Ok(ClientFrame::Request(Request::Unknown(t))) if t == "dance"
        ));
        assert!(ClientFrame::parse("{not json").is_err());
        match ClientFrame::parse(r#"{"type":"heartbeat","payload":{"count":1}}"#) {
            Ok(ClientFrame::Heartbeat(payload)) => assert_eq!(payload["count"], 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nonces_and_members_keep_their_special_cases() {
        let frame = chat(r#"{"type":"chat","payload":{"nonce":null}}"#);
        assert_eq!(frame.nonce.checked(), Ok(None));
        let frame = chat(r#"{"type":"chat","payload":{"nonce":""}}"#);
        assert!(frame.nonce.checked().is_err());
        let frame = chat(r#"{"type":"chat","payload":{"nonce":"n-1"}}"#);
        assert_eq!(frame.nonce.checked(), Ok(Some("n-1")));
        match ClientFrame::parse(r#"{"type":"room","payload":{"members":["a",1,"b"]}}"#) {
            Ok(ClientFrame::Request(Request::Room(room))) => {
                assert!(matches!(room.members, Members::Names(names) if names == ["a", "b"]))
            }
            other => panic!("{other:?}"),
        }
    }
}
