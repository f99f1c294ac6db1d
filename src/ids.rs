//! 64-bit snowflake ids: 41 bits of milliseconds since herald's epoch, 10 bits of worker id,
//! 12 bits of sequence. Unique across nodes as long as each node holds its own worker id, which
//! `store::lease_node_id` hands out. On the wire they are strings, because JavaScript numbers lose
//! precision above 2^53.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// 2024-01-01T00:00:00Z in Unix milliseconds.
const EPOCH_MS: i64 = 1_704_067_200_000;
const WORKER_BITS: u32 = 10;
const SEQUENCE_BITS: u32 = 12;
const MAX_SEQUENCE: i64 = (1 << SEQUENCE_BITS) - 1;

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Unix milliseconds as an RFC 3339 instant in UTC with milliseconds, as the JSON API shows
/// every stored time.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[derive(Debug)]
pub struct IdGenerator {
    worker_id: i64,
    state: Mutex<(i64, i64)>,
}

impl IdGenerator {
    pub fn new(worker_id: u16) -> Self {
        IdGenerator {
            worker_id: i64::from(worker_id) & ((1 << WORKER_BITS) - 1),
            state: Mutex::new((0, 0)),
        }
    }

    pub fn worker_id(&self) -> u16 {
        self.worker_id as u16
    }

    /// The next id; strictly increasing on this node, even if the wall clock steps back.
    pub fn next(&self) -> i64 {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (last_ms, sequence) = *state;
        let mut ms = (now_ms() - EPOCH_MS).max(last_ms);
        let next_sequence = if ms == last_ms { sequence + 1 } else { 0 };
        let next_sequence = if next_sequence > MAX_SEQUENCE {
            // 4096 ids in one millisecond: borrow the next millisecond rather than spin.
            ms += 1;
            0
        } else {
            next_sequence
        };
        *state = (ms, next_sequence);
        (ms << (WORKER_BITS + SEQUENCE_BITS)) | (self.worker_id << SEQUENCE_BITS) | next_sequence
    }
}

/// The smallest snowflake id made at or after the Unix millisecond `ms`: every id below it was
/// made earlier.
pub fn first_id_at(ms: i64) -> i64 {
    (ms - EPOCH_MS).max(0) << (WORKER_BITS + SEQUENCE_BITS)
}

/// The Unix milliseconds at which a snowflake id was made.
pub fn timestamp_ms(id: i64) -> i64 {
    (id >> (WORKER_BITS + SEQUENCE_BITS)) + EPOCH_MS
}

/// Serde helpers that write an `i64` id as a decimal string and read it from a string or number.
pub mod as_string {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(id: &i64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(id)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Number(i64),
        }
        match Either::deserialize(deserializer)? {
            Either::Number(n) => Ok(n),
            Either::Text(s) => s
                .trim()
                .parse()
                .map_err(|_| D::Error::custom(format!("not an id: {s:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_and_carry_worker_and_time() {
        let ids = IdGenerator::new(513);
        let mut last = 0;
        for _ in 0..10_000 {
            let id = ids.next();
            assert!(id > last);
            last = id;
        }
        assert_eq!((last >> SEQUENCE_BITS) & 1023, 513);
        assert!((timestamp_ms(last) - now_ms()).abs() < 5_000);
    }
}
