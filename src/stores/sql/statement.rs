//! Statements built from validated names and bound values. Nothing a user
//! wrote is ever pasted into SQL text: names are checked and quoted, values
//! are parameters. This module knows dialects only, nothing of targets.

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AssertSqlSafe, Row};

use super::dialect::Dialect;

/// A bound value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Arg {
    /// An integer.
    Int(i64),
    /// Text.
    Text(String),
    /// Bytes (binary keys).
    Bytes(Vec<u8>),
}

impl Arg {
    /// Reads column `index` of a row as the kind of value a key or a
    /// dynamically typed column holds: an integer, text or bytes.
    pub fn decode(row: &AnyRow, index: usize) -> Result<Self, sqlx::Error> {
        if let Ok(i) = row.try_get::<i64, _>(index) {
            return Ok(Self::Int(i));
        }
        if let Ok(s) = row.try_get::<String, _>(index) {
            return Ok(Self::Text(s));
        }
        row.try_get::<Vec<u8>, _>(index).map(Self::Bytes)
    }
}

/// A statement under construction: SQL text with placeholders, and the
/// values bound to them in order.
#[derive(Clone, Debug)]
pub struct Sql {
    dialect: Dialect,
    text: String,
    args: Vec<Arg>,
    /// Inside [`Sql::evaluated_once`].
    once: bool,
}

impl Sql {
    /// An empty statement.
    pub fn new(dialect: Dialect) -> Self {
        Self { dialect, text: String::new(), args: Vec::new(), once: false }
    }

    /// The dialect the statement is written in.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Appends SQL written in this crate (never user input).
    pub fn raw(&mut self, sql: &str) -> &mut Self {
        self.text.push_str(sql);
        self
    }

    /// Appends a quoted column name.
    pub fn ident(&mut self, name: &str) -> &mut Self {
        let q = self.dialect.quote(name);
        self.raw(&q)
    }

    /// Appends a quoted, possibly schema-qualified, table name.
    pub fn table(&mut self, name: &str) -> &mut Self {
        let q = self.dialect.quote_table(name);
        self.raw(&q)
    }

    /// Appends a placeholder bound to `arg`.
    pub fn bind(&mut self, arg: Arg) -> &mut Self {
        self.args.push(arg);
        let p = self.dialect.placeholder(self.args.len());
        self.raw(&p)
    }

    /// Appends a placeholder bound to a text value.
    pub fn text(&mut self, value: impl Into<String>) -> &mut Self {
        self.bind(Arg::Text(value.into()))
    }

    /// Appends a placeholder bound to an integer.
    pub fn int(&mut self, value: i64) -> &mut Self {
        self.bind(Arg::Int(value))
    }

    /// Appends a bound text value cast to a SQL type written in this crate,
    /// like `timestamptz` or `DATETIME(6)`.
    pub fn cast_text(&mut self, value: impl Into<String>, sql_type: &str) -> &mut Self {
        if self.once && self.dialect == Dialect::Postgres {
            return self.raw("(SELECT CAST(").text(value).raw(" AS ").raw(sql_type).raw("))");
        }
        self.raw("CAST(").text(value).raw(" AS ").raw(sql_type).raw(")")
    }

    /// Appends what `write` appends, with each [`Sql::cast_text`] in it
    /// computed once per statement instead of once per row it filters.
    ///
    /// PostgreSQL reads text into a time with a STABLE function, which it
    /// never folds into a constant: in a filter (not an index condition) it
    /// parses the text again for every row it looks at, about 0.23 µs a
    /// row, a third of what deleting the row costs. A scalar sub-select is
    /// computed once (an InitPlan). Only for filters: the planner cannot
    /// estimate how many rows a condition on a sub-select's value keeps, so
    /// a condition an index should answer keeps its plain cast, and a
    /// filter that an index could answer is better kept from it (a generic
    /// plan chose the time index for one, `IS TRUE` prevents that). Other
    /// dialects fold the cast themselves.
    pub fn evaluated_once(&mut self, write: impl FnOnce(&mut Self)) -> &mut Self {
        let outer = std::mem::replace(&mut self.once, true);
        write(self);
        self.once = outer;
        self
    }

    /// Appends `items`, each written by `each`, separated by `sep`.
    pub fn join<T>(
        &mut self,
        items: impl IntoIterator<Item = T>,
        sep: &str,
        mut each: impl FnMut(&mut Self, T),
    ) -> &mut Self {
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.raw(sep);
            }
            each(self, item);
        }
        self
    }

    /// Appends a parenthesised list of quoted column names.
    pub fn columns<'c>(&mut self, names: impl IntoIterator<Item = &'c str>) -> &mut Self {
        self.raw("(").join(names, ", ", |sql, n| {
            sql.ident(n);
        });
        self.raw(")")
    }

    /// The SQL text.
    pub fn sql(&self) -> &str {
        &self.text
    }

    /// The bound values.
    pub fn args(&self) -> &[Arg] {
        &self.args
    }

    /// A query with every value bound.
    pub fn query(&self) -> Query<'static, Any, AnyArguments> {
        // Safe: the text holds only this crate's SQL, quoted validated names
        // and placeholders; every value is in `args`.
        let mut q = sqlx::query(AssertSqlSafe(self.text.clone()));
        for arg in &self.args {
            q = match arg {
                Arg::Int(i) => q.bind(*i),
                Arg::Text(s) => q.bind(s.clone()),
                Arg::Bytes(b) => q.bind(b.clone()),
            };
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cast_evaluated_once_is_a_sub_select_on_postgres_only_and_only_inside() {
        let mut pg = Sql::new(Dialect::Postgres);
        pg.cast_text("2025-01-01", "date").raw(" ; ");
        pg.evaluated_once(|sql| {
            sql.raw("t < ").cast_text("2025-01-02", "date");
        });
        pg.raw(" ; ").cast_text("2025-01-03", "date");
        assert_eq!(pg.sql(), "CAST($1 AS date) ; t < (SELECT CAST($2 AS date)) ; CAST($3 AS date)");
        assert_eq!(pg.args().len(), 3);
        let mut my = Sql::new(Dialect::MySql);
        my.evaluated_once(|sql| {
            sql.cast_text("2025-01-02", "DATE");
        });
        assert_eq!(my.sql(), "CAST(? AS DATE)");
    }

    #[test]
    fn values_are_bound_never_written_into_the_text() {
        let hostile = "x'; DROP TABLE t; --";
        for d in [Dialect::Postgres, Dialect::MySql, Dialect::Sqlite] {
            let mut sql = Sql::new(d);
            sql.raw("SELECT 1 FROM ").table("s.t").raw(" WHERE ").ident("e").raw(" = ").text(hostile);
            assert!(!sql.sql().contains("DROP"), "{}", sql.sql());
            assert_eq!(sql.args(), &[Arg::Text(hostile.into())]);
        }
    }
}
