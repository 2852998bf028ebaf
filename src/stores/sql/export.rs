//! A subject's rows as JSON, for an access request's export (Art. 15 and
//! 20 GDPR). The rows are found with the very predicate an erasure deletes
//! by ([`predicate::subject`]), so an export holds exactly what an erasure
//! of the same subject would erase.
//!
//! sqlx's `Any` driver reads integers, floats, text and bytes only, so each
//! column is turned into text (or hex, for bytes) by the database itself and
//! typed again here from its declared type: integers and floats as JSON
//! numbers, exact numerics as strings (an f64 would round them), booleans,
//! JSON columns as JSON, bytes as base64, instants as RFC 3339 in UTC, and
//! times without a zone as they were written (ISO 8601, no offset invented).
//! NULL is `null`. A row with a value that cannot be converted (a zero
//! date, `infinity`, text that is not UTF-8) is counted as unreadable,
//! never exported half or dropped silently.

use base64::Engine as _;
use serde_json::{Map, Number, Value};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::catalog::{Child, Column, Resolved, TableInfo};
use super::dialect::Dialect;
use super::statement::Sql;
use crate::stores::identity::Identity;

/// How a column's values are read back from their text form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    /// An integer: a JSON number.
    Integer,
    /// A binary float: a JSON number (a string for NaN and infinities).
    Float,
    /// An exact numeric (NUMERIC, DECIMAL): a string, digits as stored.
    Decimal,
    /// A boolean.
    Boolean,
    /// A JSON document: embedded as JSON.
    Json,
    /// Bytes: base64.
    Bytes,
    /// A point in time: RFC 3339 in UTC.
    Instant,
    /// A wall-clock time without a zone: ISO 8601 as written, no offset.
    Civil,
    /// A date.
    Date,
    /// Anything else: its text form.
    Text,
    /// SQLite: whatever storage class each value has.
    Dynamic,
}

/// The kind of a column of this declared type.
pub fn value_kind(dialect: Dialect, declared: &str) -> ValueKind {
    let t = declared.to_ascii_lowercase();
    let base = t.split('(').next().unwrap_or("").trim();
    match dialect {
        Dialect::Sqlite => ValueKind::Dynamic,
        Dialect::Postgres => match base {
            _ if t.ends_with("[]") => ValueKind::Text,
            "smallint" | "integer" | "bigint" => ValueKind::Integer,
            "real" | "double precision" => ValueKind::Float,
            "numeric" | "money" => ValueKind::Decimal,
            "boolean" => ValueKind::Boolean,
            "json" | "jsonb" => ValueKind::Json,
            "bytea" => ValueKind::Bytes,
            "date" => ValueKind::Date,
            _ if base.starts_with("timestamp") && t.ends_with(" with time zone") => ValueKind::Instant,
            _ if base.starts_with("timestamp") => ValueKind::Civil,
            _ => ValueKind::Text,
        },
        Dialect::MySql => match base {
            "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "year" => ValueKind::Integer,
            "float" | "double" | "real" => ValueKind::Float,
            "decimal" | "numeric" => ValueKind::Decimal,
            "json" => ValueKind::Json,
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" | "bit" => ValueKind::Bytes,
            "timestamp" => ValueKind::Instant,
            "datetime" => ValueKind::Civil,
            "date" => ValueKind::Date,
            _ => ValueKind::Text,
        },
    }
}

/// The columns an export reads of a table, each with its kind.
pub fn columns(dialect: Dialect, table: &TableInfo) -> Vec<(&Column, ValueKind)> {
    table.columns.iter().map(|c| (c, value_kind(dialect, &c.declared))).collect()
}

/// Appends the select list: for each column, its value as text (hex for
/// bytes); SQLite adds each value's storage class before it.
fn select_list(sql: &mut Sql, cols: &[(&Column, ValueKind)]) {
    let d = sql.dialect();
    sql.join(cols.iter(), ", ", |sql, (c, kind)| {
        let name = c.name.as_str();
        match (d, kind) {
            (Dialect::Sqlite, _) => {
                // A REAL's text form has 15 digits, printf's 16 unless
                // asked with `!`; 17 keep every bit.
                sql.raw("typeof(").ident(name).raw("), CASE typeof(").ident(name);
                sql.raw(") WHEN 'blob' THEN hex(").ident(name).raw(") WHEN 'real' THEN printf('%!.17g', ");
                sql.ident(name).raw(") ELSE CAST(").ident(name).raw(" AS TEXT) END");
            }
            (Dialect::Postgres, ValueKind::Bytes) => {
                sql.raw("encode(").ident(name).raw(", 'hex')");
            }
            (Dialect::Postgres, _) => {
                sql.raw("CAST(").ident(name).raw(" AS text)");
            }
            (Dialect::MySql, ValueKind::Bytes) => {
                sql.raw("HEX(").ident(name).raw(")");
            }
            (Dialect::MySql, _) => {
                sql.raw("CAST(").ident(name).raw(" AS CHAR)");
            }
        }
    });
}

/// The name the exported table goes by in the statement, so that ORDER BY
/// names its columns and not the select list's text forms of them (which
/// PostgreSQL would sort as text).
const ROW: &str = "delenda_export_row";

/// The order rows are exported in: the primary key, else the batch key
/// (`key`, a parent target's), else where the row lies (PostgreSQL's ctid,
/// SQLite's rowid), else every column.
fn order_by(sql: &mut Sql, table: &TableInfo, key: &[Column]) {
    let mut keys: Vec<&str> = table.primary_key.iter().map(String::as_str).collect();
    if keys.is_empty() {
        keys = key.iter().map(|c| c.name.as_str()).collect();
    }
    sql.raw(" ORDER BY ");
    if !keys.is_empty() {
        sql.join(keys, ", ", |sql, k| {
            sql.ident(ROW).raw(".").ident(k);
        });
    } else if sql.dialect() == Dialect::Postgres {
        sql.ident(ROW).raw(".ctid");
    } else if let Some(rowid) = table.rowid {
        sql.ident(ROW).raw(".").raw(rowid);
    } else {
        sql.join(table.columns.iter(), ", ", |sql, c| {
            sql.ident(ROW).raw(".").ident(&c.name);
        });
    }
}

/// The statement that reads the subject's rows, at most `limit + 1` of them
/// (one more than may be exported, to tell "more than the limit").
pub fn statement(dialect: Dialect, r: &Resolved, identities: &[(&Column, Vec<Identity>)], limit: u64) -> Sql {
    let cols = columns(dialect, &r.table);
    let mut sql = Sql::new(dialect);
    sql.raw("SELECT ");
    select_list(&mut sql, &cols);
    sql.raw(" FROM ").table(r.table.name.as_str()).raw(" AS ").ident(ROW).raw(" WHERE ");
    super::predicate::subject(&mut sql, r, identities);
    order_by(&mut sql, &r.table, &r.key);
    limit_plus_one(&mut sql, limit);
    sql
}

/// The statement that reads the rows of a declared child table whose
/// foreign key names one of the subject's rows: the rows an erasure of the
/// subject deletes from that table (`WHERE fk IN (SELECT parent key FROM
/// the target WHERE the subject's predicate)`, the erasure's own subquery),
/// at most `limit + 1` of them.
pub fn child_statement(
    dialect: Dialect,
    r: &Resolved,
    child: &Child,
    child_table: &TableInfo,
    identities: &[(&Column, Vec<Identity>)],
    limit: u64,
) -> Sql {
    let cols = columns(dialect, child_table);
    let mut sql = Sql::new(dialect);
    sql.raw("SELECT ");
    select_list(&mut sql, &cols);
    sql.raw(" FROM ").table(child.table.as_str()).raw(" AS ").ident(ROW).raw(" WHERE ");
    sql.ident(ROW).raw(".").ident(&child.foreign_key.name).raw(" IN (SELECT ").ident(&child.parent_key.name);
    sql.raw(" FROM ").table(r.table.name.as_str()).raw(" WHERE ");
    super::predicate::subject(&mut sql, r, identities);
    sql.raw(")");
    order_by(&mut sql, child_table, &[]);
    limit_plus_one(&mut sql, limit);
    sql
}

/// `LIMIT limit + 1`: one row more than may be exported tells "more than
/// the limit" without counting.
fn limit_plus_one(sql: &mut Sql, limit: u64) {
    sql.raw(" LIMIT ").int(i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX));
}

/// One row as a JSON object, or `None` when a value cannot be converted.
pub fn row_to_json(dialect: Dialect, cols: &[(&Column, ValueKind)], row: &AnyRow) -> Option<Value> {
    let mut out = Map::new();
    let mut i = 0;
    for (c, kind) in cols {
        let value = if dialect == Dialect::Sqlite {
            let class: String = row.try_get(i).ok()?;
            let text: Option<String> = row.try_get(i + 1).ok()?;
            i += 2;
            dynamic_value(&class, text)?
        } else {
            let text: Option<String> = row.try_get(i).ok()?;
            i += 1;
            match text {
                None => Value::Null,
                Some(t) => typed_value(*kind, &t)?,
            }
        };
        out.insert(c.name.clone(), value);
    }
    Some(Value::Object(out))
}

/// A SQLite value by its storage class.
fn dynamic_value(class: &str, text: Option<String>) -> Option<Value> {
    match (class, text) {
        ("null", _) => Some(Value::Null),
        (_, None) => None,
        ("integer", Some(t)) => typed_value(ValueKind::Integer, &t),
        ("real", Some(t)) => typed_value(ValueKind::Float, &t),
        ("blob", Some(t)) => typed_value(ValueKind::Bytes, &t),
        ("text", Some(t)) => Some(Value::String(t)),
        _ => None,
    }
}

/// A value from the text form the database gave it, typed by its kind.
pub fn typed_value(kind: ValueKind, text: &str) -> Option<Value> {
    match kind {
        ValueKind::Integer => {
            let t = text.trim();
            t.parse::<i64>().map(Number::from).or_else(|_| t.parse::<u64>().map(Number::from)).ok().map(Value::Number)
        }
        ValueKind::Float => {
            let t = text.trim();
            let f: f64 = t.parse().ok().or_else(|| match t.to_ascii_lowercase().as_str() {
                "nan" => Some(f64::NAN),
                "infinity" | "inf" => Some(f64::INFINITY),
                "-infinity" | "-inf" => Some(f64::NEG_INFINITY),
                _ => None,
            })?;
            Some(Number::from_f64(f).map_or_else(|| Value::String(t.to_owned()), Value::Number))
        }
        ValueKind::Decimal => Some(Value::String(text.trim().to_owned())),
        ValueKind::Boolean => match text {
            "true" | "t" => Some(Value::Bool(true)),
            "false" | "f" => Some(Value::Bool(false)),
            _ => None,
        },
        ValueKind::Json => Some(serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))),
        ValueKind::Bytes => {
            // MySQL writes a BIT(n) value's hex without its leading zero.
            let padded = if text.len() % 2 == 1 { format!("0{text}") } else { text.to_owned() };
            let bytes = hex::decode(padded).ok()?;
            Some(Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)))
        }
        ValueKind::Instant => instant(text).map(|t| Value::String(t.to_string())),
        ValueKind::Civil => {
            let t: jiff::civil::DateTime = text.trim().replacen(' ', "T", 1).parse().ok()?;
            Some(Value::String(t.to_string()))
        }
        ValueKind::Date => {
            let d: jiff::civil::Date = text.trim().parse().ok()?;
            Some(Value::String(d.to_string()))
        }
        ValueKind::Text | ValueKind::Dynamic => Some(Value::String(text.to_owned())),
    }
}

/// An instant from PostgreSQL's `timestamptz` text (`2024-01-02
/// 03:04:05.5+00`, the session's zone being UTC) or MySQL's `TIMESTAMP`
/// text (`2024-01-02 03:04:05.5`, in the session's UTC).
fn instant(text: &str) -> Option<jiff::Timestamp> {
    let iso = text.trim().replacen(' ', "T", 1);
    if let Ok(t) = iso.parse::<jiff::Timestamp>() {
        return Some(t);
    }
    let civil: jiff::civil::DateTime = iso.parse().ok()?;
    civil.to_zoned(jiff::tz::TimeZone::UTC).ok().map(|z| z.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_the_declared_types() {
        assert_eq!(value_kind(Dialect::Postgres, "timestamp with time zone"), ValueKind::Instant);
        assert_eq!(value_kind(Dialect::Postgres, "timestamp(3) with time zone"), ValueKind::Instant);
        assert_eq!(value_kind(Dialect::Postgres, "timestamp without time zone"), ValueKind::Civil);
        assert_eq!(value_kind(Dialect::Postgres, "numeric(12,2)"), ValueKind::Decimal);
        assert_eq!(value_kind(Dialect::Postgres, "integer[]"), ValueKind::Text);
        assert_eq!(value_kind(Dialect::MySql, "timestamp"), ValueKind::Instant);
        assert_eq!(value_kind(Dialect::MySql, "longblob"), ValueKind::Bytes);
        assert_eq!(value_kind(Dialect::Sqlite, "DATETIME"), ValueKind::Dynamic);
    }

    #[test]
    fn values_keep_their_type_and_precision() {
        assert_eq!(typed_value(ValueKind::Integer, "18446744073709551615"), Some(Value::from(u64::MAX)));
        assert_eq!(typed_value(ValueKind::Decimal, "12345678901234567890.01"), Some("12345678901234567890.01".into()));
        assert_eq!(typed_value(ValueKind::Float, "0.30000000000000004"), Some(Value::from(0.30000000000000004)));
        assert_eq!(typed_value(ValueKind::Float, "NaN"), Some("NaN".into()));
        assert_eq!(typed_value(ValueKind::Bytes, "00ff10"), Some("AP8Q".into()));
        assert_eq!(typed_value(ValueKind::Boolean, "t"), Some(Value::Bool(true)));
        assert_eq!(typed_value(ValueKind::Json, r#"{"a": [1]}"#), Some(serde_json::json!({"a": [1]})));
    }

    #[test]
    fn times_keep_their_zone_or_stay_as_written() {
        assert_eq!(
            typed_value(ValueKind::Instant, "2024-03-31 01:30:00.25+00"),
            Some("2024-03-31T01:30:00.25Z".into())
        );
        assert_eq!(typed_value(ValueKind::Instant, "2024-03-31 01:30:00"), Some("2024-03-31T01:30:00Z".into()));
        assert_eq!(typed_value(ValueKind::Civil, "2024-03-31 02:30:00.5"), Some("2024-03-31T02:30:00.5".into()));
        assert_eq!(typed_value(ValueKind::Date, "2024-02-29"), Some("2024-02-29".into()));
    }

    #[test]
    fn what_is_not_a_time_is_unreadable() {
        assert_eq!(typed_value(ValueKind::Instant, "infinity"), None);
        assert_eq!(typed_value(ValueKind::Civil, "0000-00-00 00:00:00"), None);
        assert_eq!(typed_value(ValueKind::Date, "0000-00-00"), None);
        assert_eq!(typed_value(ValueKind::Bytes, "zz"), None);
    }
}
