//! The values a script binds and the rows a read returns: only BIGINT and TEXT (the storage
//! boundary), decoded alike from both backends.

use crate::store::StoreError;

/// A value bound to a script's statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(Option<i64>),
    Text(Option<String>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(Some(v))
    }
}

impl From<Option<i64>> for Value {
    fn from(v: Option<i64>) -> Self {
        Value::Int(v)
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(Some(v))
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(Some(v.to_string()))
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(Some(v.clone()))
    }
}

impl From<Option<String>> for Value {
    fn from(v: Option<String>) -> Self {
        Value::Text(v)
    }
}

impl From<Option<&str>> for Value {
    fn from(v: Option<&str>) -> Self {
        Value::Text(v.map(str::to_string))
    }
}

/// A row read by [`read_many`](super::read_many): its columns as values (SQLite's NULL is `Int(None)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row(pub Vec<Value>);

/// A Rust type a [`Row`]'s column is read as.
pub trait FromValue: Sized {
    fn from_value(value: &Value) -> Option<Self>;
}

impl FromValue for i64 {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Int(Some(v)) => Some(*v),
            _ => None,
        }
    }
}

impl FromValue for bool {
    fn from_value(value: &Value) -> Option<Self> {
        i64::from_value(value).map(|v| v != 0)
    }
}

impl FromValue for String {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Text(Some(v)) => Some(v.clone()),
            _ => None,
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Int(None) | Value::Text(None) => Some(None),
            other => T::from_value(other).map(Some),
        }
    }
}

impl Row {
    /// Column `index` as a `T`. Like sqlx's `Row::get`, a column missing or of another type is
    /// a programming error (the statement and its reader are written together) and panics.
    pub fn get<T: FromValue>(&self, index: usize) -> T {
        match self.0.get(index).and_then(T::from_value) {
            Some(value) => value,
            None => panic!(
                "column {index} is {:?}, not a {}",
                self.0.get(index),
                std::any::type_name::<T>()
            ),
        }
    }

    /// A row from sqlx (PostgreSQL's reads): integers, booleans and text, as herald's tables
    /// hold.
    pub(super) fn from_any(row: &sqlx::any::AnyRow) -> Result<Row, StoreError> {
        use sqlx::any::AnyTypeInfoKind as Kind;
        use sqlx::{Row as _, TypeInfo, ValueRef};
        let mut values = Vec::with_capacity(row.columns().len());
        for index in 0..row.columns().len() {
            let raw = row.try_get_raw(index)?;
            let kind = if raw.is_null() {
                Kind::Null
            } else {
                raw.type_info().kind()
            };
            values.push(match kind {
                Kind::Null => Value::Int(None),
                Kind::Bool => Value::Int(row.try_get::<Option<bool>, _>(index)?.map(i64::from)),
                Kind::SmallInt | Kind::Integer | Kind::BigInt => {
                    Value::Int(row.try_get::<Option<i64>, _>(index)?)
                }
                Kind::Text => Value::Text(row.try_get::<Option<String>, _>(index)?),
                _ => {
                    let name = raw.type_info().name().to_string();
                    return Err(StoreError::Decode(
                        format!("column {index}: herald reads no {name} columns").into(),
                    ));
                }
            });
        }
        Ok(Row(values))
    }
}
