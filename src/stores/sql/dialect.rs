//! What differs between PostgreSQL, MySQL/MariaDB and SQLite: quoting,
//! placeholders, time comparison, calendar arithmetic and column types.

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::api::policy::PeriodUnit;

/// A SQL dialect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    MySql,
    /// SQLite.
    Sqlite,
}

/// What a column's type lets it be used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypeClass {
    /// A timestamp, datetime or date.
    Time,
    /// An integer.
    Integer,
    /// Text compared by the database as written.
    Text,
    /// Anything else.
    Other,
}

impl Dialect {
    /// The kind of store, as the DataStore spec names it.
    pub fn kind(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::MySql => "mysql",
            Self::Sqlite => "sqlite",
        }
    }

    /// The dialect of a connection URL, by its scheme.
    pub fn of_url(url: &str) -> Option<Self> {
        let scheme = url.split(':').next()?.to_ascii_lowercase();
        match scheme.as_str() {
            "postgres" | "postgresql" => Some(Self::Postgres),
            "mysql" | "mariadb" => Some(Self::MySql),
            "sqlite" => Some(Self::Sqlite),
            _ => None,
        }
    }

    /// Quotes one identifier. Callers pass validated names only; the quote
    /// character is doubled anyway, so even a bad name stays one identifier.
    pub fn quote(self, ident: &str) -> String {
        let q = if self == Self::MySql { '`' } else { '"' };
        let mut out = String::with_capacity(ident.len() + 2);
        out.push(q);
        for c in ident.chars() {
            if c == q {
                out.push(q);
            }
            out.push(c);
        }
        out.push(q);
        out
    }

    /// Quotes a possibly schema-qualified table name part by part.
    pub fn quote_table(self, table: &str) -> String {
        table.split('.').map(|part| self.quote(part)).collect::<Vec<_>>().join(".")
    }

    /// The placeholder of the `n`th bound value, from 1.
    pub fn placeholder(self, n: usize) -> String {
        match self {
            Self::Postgres => format!("${n}"),
            Self::MySql | Self::Sqlite => "?".to_owned(),
        }
    }

    /// An instant as text the dialect's cast below reads, in UTC, cut
    /// (never rounded up) to microseconds so a cutoff never moves later.
    pub fn instant_text(self, at: Timestamp) -> String {
        let dt = TimeZone::UTC.to_datetime(at);
        let micros = dt.subsec_nanosecond() / 1_000;
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}",
            dt.year(),
            dt.month(),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second(),
            micros
        )
    }

    /// `column < instant`, where `instant` is the SQL of a bound instant.
    pub fn time_before(self, column: &str, instant: &str) -> String {
        match self {
            Self::Postgres | Self::MySql => format!("{column} < {instant}"),
            // SQLite keeps times as text (or numbers); julianday reads the
            // ISO 8601 forms, with offsets, and yields NULL (never due) for
            // anything else.
            Self::Sqlite => format!("julianday({column}) < {instant}"),
        }
    }

    /// The SQL of a bound instant (`param` is its placeholder).
    pub fn instant(self, param: &str) -> String {
        match self {
            Self::Postgres => format!("CAST({param} AS timestamptz)"),
            Self::MySql => format!("CAST({param} AS DATETIME(6))"),
            Self::Sqlite => format!("julianday({param})"),
        }
    }

    /// The SQL of a bound instant minus `amount` (an integer column) calendar
    /// units, in UTC; month and year steps clamp to the month's last day, as
    /// the planner's calendar does.
    pub fn instant_minus(self, param: &str, amount: &str, unit: PeriodUnit) -> String {
        match self {
            Self::Postgres => {
                let field = match unit {
                    PeriodUnit::Days => "days",
                    PeriodUnit::Months => "months",
                    PeriodUnit::Years => "years",
                };
                format!("(CAST({param} AS timestamptz) - make_interval({field} => CAST({amount} AS integer)))")
            }
            Self::MySql => {
                let unit = match unit {
                    PeriodUnit::Days => "DAY",
                    PeriodUnit::Months => "MONTH",
                    PeriodUnit::Years => "YEAR",
                };
                format!("DATE_SUB(CAST({param} AS DATETIME(6)), INTERVAL {amount} {unit})")
            }
            Self::Sqlite => {
                let unit = match unit {
                    PeriodUnit::Days => "' days'",
                    PeriodUnit::Months => "' months', 'floor'",
                    PeriodUnit::Years => "' years', 'floor'",
                };
                format!("julianday({param}, '-' || {amount} || {unit})")
            }
        }
    }

    /// The largest per-row period accepted in a unit (100 years); rows
    /// outside 0..=max are never due, so garbage never widens a delete.
    pub fn max_period(unit: PeriodUnit) -> i64 {
        match unit {
            PeriodUnit::Days => 36_525,
            PeriodUnit::Months => 1_200,
            PeriodUnit::Years => 100,
        }
    }

    /// What a column of the declared type can be used for.
    pub fn classify(self, declared: &str) -> TypeClass {
        let t = declared.to_ascii_lowercase();
        match self {
            Self::Postgres => match t.as_str() {
                "timestamp with time zone" | "timestamp without time zone" | "date" => TypeClass::Time,
                "smallint" | "integer" | "bigint" => TypeClass::Integer,
                "text" | "character varying" | "citext" => TypeClass::Text,
                _ if t.starts_with("timestamp") => TypeClass::Time,
                _ if t.starts_with("character varying") => TypeClass::Text,
                _ => TypeClass::Other,
            },
            Self::MySql => match t.as_str() {
                "datetime" | "timestamp" | "date" => TypeClass::Time,
                "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" => TypeClass::Integer,
                "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" => TypeClass::Text,
                _ => TypeClass::Other,
            },
            // SQLite's type affinity rules (https://sqlite.org/datatype3.html).
            Self::Sqlite => {
                if t.contains("int") {
                    TypeClass::Integer
                } else if t.contains("char") || t.contains("clob") || t.contains("text") {
                    if t.contains("date") || t.contains("time") { TypeClass::Time } else { TypeClass::Text }
                } else if t.contains("date") || t.contains("time") {
                    TypeClass::Time
                } else {
                    TypeClass::Other
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_per_dialect_and_splits_schema_from_table() {
        assert_eq!(Dialect::Postgres.quote_table("billing.invoices"), "\"billing\".\"invoices\"");
        assert_eq!(Dialect::MySql.quote_table("billing.invoices"), "`billing`.`invoices`");
        assert_eq!(Dialect::Sqlite.quote_table("invoices"), "\"invoices\"");
    }

    #[test]
    fn a_quote_inside_a_name_is_doubled() {
        assert_eq!(Dialect::Postgres.quote("a\"b"), "\"a\"\"b\"");
        assert_eq!(Dialect::MySql.quote("a`b"), "`a``b`");
    }

    #[test]
    fn instants_are_cut_to_microseconds_never_rounded_up() {
        let at: Timestamp = "2026-03-01T12:34:56.999999999Z".parse().unwrap();
        assert_eq!(Dialect::Postgres.instant_text(at), "2026-03-01 12:34:56.999999");
    }

    #[test]
    fn knows_the_dialect_of_a_url() {
        assert_eq!(Dialect::of_url("postgres://u@h/db"), Some(Dialect::Postgres));
        assert_eq!(Dialect::of_url("mysql://u@h/db"), Some(Dialect::MySql));
        assert_eq!(Dialect::of_url("sqlite:///tmp/x.db"), Some(Dialect::Sqlite));
        assert_eq!(Dialect::of_url("redis://h"), None);
    }

    #[test]
    fn classifies_time_columns() {
        assert_eq!(Dialect::Postgres.classify("timestamp with time zone"), TypeClass::Time);
        assert_eq!(Dialect::MySql.classify("datetime"), TypeClass::Time);
        assert_eq!(Dialect::Sqlite.classify("TEXT"), TypeClass::Text);
        assert_eq!(Dialect::Sqlite.classify("DATETIME"), TypeClass::Time);
        assert_eq!(Dialect::Sqlite.classify("INTEGER"), TypeClass::Integer);
        assert_eq!(Dialect::Postgres.classify("jsonb"), TypeClass::Other);
    }
}
