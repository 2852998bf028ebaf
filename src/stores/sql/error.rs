//! Turns sqlx errors into the store layer's typed errors.

use sqlx::mysql::MySqlDatabaseError;

use super::dialect::Dialect;
use crate::stores::StoreError;

/// Classifies an error met while working on `object` (like "table t").
pub fn classify(dialect: Dialect, object: &str, error: sqlx::Error) -> StoreError {
    let store = dialect.kind();
    let db = match error {
        sqlx::Error::Database(db) => db,
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Configuration(_)
        | sqlx::Error::WorkerCrashed => {
            return StoreError::Unreachable { store, detail: error.to_string() };
        }
        other => return StoreError::Backend { store, detail: other.to_string() },
    };
    // Messages name tables, columns and constraints, never bound values:
    // the store builds no statement that could echo one.
    let detail = db.message().to_owned();
    let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
    let object = object.to_owned();
    match dialect {
        Dialect::Postgres => match code.as_str() {
            "28P01" | "28000" => StoreError::AuthenticationFailed { store, detail },
            "3D000" => StoreError::Unreachable { store, detail },
            "42P01" | "3F000" => StoreError::MissingTable { object, hint: String::new() },
            "42703" => StoreError::MissingColumn { object, column: detail, role: "column", hint: String::new() },
            "42501" => StoreError::PermissionDenied { object, detail },
            "23503" | "23001" => StoreError::ReferencedByOtherRecords { object, detail, referrers: String::new() },
            "40001" | "40P01" => StoreError::Conflict { store, detail: format!("{detail} (SQLSTATE {code})") },
            c if c.starts_with("08") || c.starts_with("57P") => StoreError::Unreachable { store, detail },
            _ => StoreError::Backend { store, detail: format!("{detail} (SQLSTATE {code})") },
        },
        Dialect::MySql => {
            let number = db.try_downcast_ref::<MySqlDatabaseError>().map(|e| e.number()).unwrap_or(0);
            match number {
                1045 | 1698 => StoreError::AuthenticationFailed { store, detail },
                1049 => StoreError::Unreachable { store, detail },
                1146 => StoreError::MissingTable { object, hint: String::new() },
                1054 => StoreError::MissingColumn { object, column: detail, role: "column", hint: String::new() },
                1044 | 1142 | 1143 | 1227 => StoreError::PermissionDenied { object, detail },
                1451 => StoreError::ReferencedByOtherRecords { object, detail, referrers: String::new() },
                1205 | 1213 => StoreError::Conflict { store, detail: format!("{detail} (error {number})") },
                _ => StoreError::Backend { store, detail: format!("{detail} (error {number})") },
            }
        }
        Dialect::Sqlite => {
            // The extended result code; the primary code is its low byte.
            let primary = code.parse::<u32>().unwrap_or(0) & 0xff;
            match primary {
                8 => StoreError::PermissionDenied { object, detail },
                14 => StoreError::Unreachable { store, detail },
                23 => StoreError::AuthenticationFailed { store, detail },
                // 787: a foreign key; RESTRICT actions fail as 1811 with the same text.
                19 if code == "787" || detail.contains("FOREIGN KEY constraint failed") => {
                    StoreError::ReferencedByOtherRecords { object, detail, referrers: String::new() }
                }
                1 if detail.starts_with("no such table") => StoreError::MissingTable { object, hint: String::new() },
                1 if detail.starts_with("no such column") => {
                    StoreError::MissingColumn { object, column: detail, role: "column", hint: String::new() }
                }
                _ => StoreError::Backend { store, detail: format!("{detail} (code {code})") },
            }
        }
    }
}
