//! What differs between PostgreSQL, MySQL/MariaDB and SQLite: quoting,
//! placeholders and column types.

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
    /// Bytes (binary keys such as UUIDs in BINARY(16)).
    Bytes,
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
                "binary" | "varbinary" => TypeClass::Bytes,
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
