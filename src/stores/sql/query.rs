//! Builds statements from validated names and bound values. Nothing a user
//! wrote is ever pasted into SQL text: names are checked and quoted, values
//! are parameters.

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AssertSqlSafe};

use super::dialect::{Dialect, TypeClass};
use super::schema::{Column, Resolved};
use crate::api::policy::ColumnOperator;
use crate::stores::{Cutoff, Subject};

/// A bound value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Arg {
    /// An integer.
    Int(i64),
    /// Text.
    Text(String),
}

/// A statement under construction: SQL text with placeholders, and the
/// values bound to them in order.
#[derive(Clone, Debug)]
pub struct Sql {
    dialect: Dialect,
    text: String,
    args: Vec<Arg>,
}

impl Sql {
    /// An empty statement.
    pub fn new(dialect: Dialect) -> Self {
        Self { dialect, text: String::new(), args: Vec::new() }
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
            };
        }
        q
    }
}

/// `column` equals one of `values`, exactly: byte for byte, case and
/// trailing spaces included, without pattern characters.
pub fn equals_any(sql: &mut Sql, column: &Column, values: &[&str]) {
    let d = sql.dialect;
    match d {
        Dialect::Postgres | Dialect::Sqlite => {
            // Text columns compare as they are (and can use an index); other
            // types compare by their text form, so a value that is not a
            // number simply matches nothing instead of failing a cast.
            if column.class == TypeClass::Text {
                sql.ident(&column.name);
            } else {
                sql.raw("CAST(").ident(&column.name).raw(if d == Dialect::Postgres {
                    " AS text)"
                } else {
                    " AS TEXT)"
                });
            }
            sql.raw(" IN (");
            list(sql, values, |sql, v| {
                sql.text(v);
            });
            sql.raw(")");
        }
        Dialect::MySql => {
            // MySQL's usual collations ignore case and trailing spaces, so
            // the exact test compares bytes. For utf8mb4 text columns a plain
            // comparison first lets an index narrow the search.
            sql.raw("(");
            if column.class == TypeClass::Text && column.charset.as_deref().is_some_and(|c| c.starts_with("utf8mb4")) {
                sql.ident(&column.name).raw(" IN (");
                list(sql, values, |sql, v| {
                    sql.text(v);
                });
                sql.raw(") AND ");
            }
            sql.raw("CAST(CONVERT(").ident(&column.name).raw(" USING utf8mb4) AS BINARY) IN (");
            list(sql, values, |sql, v| {
                sql.raw("CAST(CONVERT(").text(v).raw(" USING utf8mb4) AS BINARY)");
            });
            sql.raw("))");
        }
    }
}

fn list<'v>(sql: &mut Sql, values: &[&'v str], mut each: impl FnMut(&mut Sql, &'v str)) {
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            sql.raw(", ");
        }
        each(sql, v);
    }
}

/// The target's filter: every condition holds. Appends `1=1` when empty.
pub fn filter(sql: &mut Sql, target: &Resolved) {
    sql.raw("(1=1");
    for (column, cond) in &target.filter {
        sql.raw(" AND ");
        let values: Vec<&str> = cond.values.iter().map(String::as_str).collect();
        match cond.operator {
            ColumnOperator::Equals | ColumnOperator::In if values.is_empty() => {
                sql.raw("1=0");
            }
            ColumnOperator::Equals | ColumnOperator::In => equals_any(sql, column, &values),
            // NULL is neither equal nor unequal to a value: such rows never
            // match, in the direction that deletes less.
            ColumnOperator::NotEquals | ColumnOperator::NotIn if values.is_empty() => {
                sql.ident(&column.name).raw(" IS NOT NULL");
            }
            ColumnOperator::NotEquals | ColumnOperator::NotIn => {
                sql.raw("(").ident(&column.name).raw(" IS NOT NULL AND NOT ");
                equals_any(sql, column, &values);
                sql.raw(")");
            }
            ColumnOperator::IsNull => {
                sql.ident(&column.name).raw(" IS NULL");
            }
            ColumnOperator::IsNotNull => {
                sql.ident(&column.name).raw(" IS NOT NULL");
            }
        }
    }
    sql.raw(")");
}

/// Due for `cutoff`: the time column is before the cutoff (or before the
/// row's own period counted back from the run's start), and the filter
/// matches. A NULL time is never due.
pub fn due(sql: &mut Sql, target: &Resolved, cutoff: &Cutoff) {
    let d = sql.dialect;
    let time = d.quote(&target.time.name);
    sql.raw("(");
    match &target.period {
        None => {
            let p = placeholder_for(sql, Arg::Text(d.instant_text(cutoff.at())));
            sql.raw(&d.time_before(&time, &d.instant(&p)));
        }
        Some((column, unit)) => {
            let period = d.quote(&column.name);
            sql.raw("((").raw(&period).raw(" IS NULL AND ");
            let p = placeholder_for(sql, Arg::Text(d.instant_text(cutoff.at())));
            sql.raw(&d.time_before(&time, &d.instant(&p)));
            sql.raw(") OR (").raw(&period).raw(" >= 0 AND ").raw(&period).raw(" <= ");
            sql.bind(Arg::Int(Dialect::max_period(*unit)));
            sql.raw(" AND ");
            let p = placeholder_for(sql, Arg::Text(d.instant_text(cutoff.run_started())));
            sql.raw(&d.time_before(&time, &d.instant_minus(&p, &period, *unit)));
            sql.raw("))");
        }
    }
    sql.raw(" AND ");
    filter(sql, target);
    sql.raw(")");
}

/// Belongs to the subject: any declared identity column equals one of the
/// subject's values of that kind, within the target's filter. `None` when the
/// target declares no identity the subject has.
pub fn subject(sql: &mut Sql, target: &Resolved, subject: &Subject) -> Option<()> {
    let mut any = false;
    let before = sql.args.len();
    let mut part = Sql { dialect: sql.dialect, text: String::new(), args: std::mem::take(&mut sql.args) };
    part.raw("((");
    for (kind, column) in &target.subject {
        let values: Vec<&str> = subject.values(kind).collect();
        if values.is_empty() {
            continue;
        }
        if any {
            part.raw(" OR ");
        }
        equals_any(&mut part, column, &values);
        any = true;
    }
    part.raw(") AND ");
    filter(&mut part, target);
    part.raw(")");
    if !any {
        part.args.truncate(before);
    }
    sql.args = part.args;
    if any {
        sql.text.push_str(&part.text);
        Some(())
    } else {
        None
    }
}

/// Binds `arg` and returns its placeholder text without appending it.
fn placeholder_for(sql: &mut Sql, arg: Arg) -> String {
    sql.args.push(arg);
    sql.dialect.placeholder(sql.args.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::TableName;
    use crate::api::policy::{ColumnCondition, PeriodUnit};
    use crate::stores::sql::schema::TableInfo;

    fn col(name: &str, class: TypeClass) -> Column {
        Column { name: name.into(), declared: String::new(), class, charset: Some("utf8mb4".into()) }
    }

    fn target(period: bool) -> Resolved {
        Resolved {
            table: TableInfo { name: "t".parse::<TableName>().unwrap(), columns: vec![], primary_key: vec![] },
            key: col("id", TypeClass::Integer),
            time: col("created_at", TypeClass::Time),
            period: period.then(|| (col("keep", TypeClass::Integer), PeriodUnit::Months)),
            filter: vec![(
                col("kind", TypeClass::Text),
                ColumnCondition {
                    column: "kind".parse().unwrap(),
                    operator: ColumnOperator::In,
                    values: vec!["a".into(), "b".into()],
                },
            )],
            subject: vec![("email".parse().unwrap(), col("email", TypeClass::Text))],
            children: vec![],
        }
    }

    fn cutoff() -> Cutoff {
        Cutoff::planned("2025-01-01T00:00:00Z".parse().unwrap(), "2026-01-01T00:00:00Z".parse().unwrap()).unwrap()
    }

    #[test]
    fn due_binds_the_cutoff_and_the_filter_values() {
        let mut sql = Sql::new(Dialect::Postgres);
        due(&mut sql, &target(false), &cutoff());
        assert_eq!(sql.sql(), "(\"created_at\" < CAST($1 AS timestamptz) AND (1=1 AND \"kind\" IN ($2, $3)))");
        assert_eq!(
            sql.args(),
            &[Arg::Text("2025-01-01 00:00:00.000000".into()), Arg::Text("a".into()), Arg::Text("b".into())]
        );
    }

    #[test]
    fn a_row_period_counts_back_from_the_run_start() {
        let mut sql = Sql::new(Dialect::MySql);
        due(&mut sql, &target(true), &cutoff());
        assert!(sql.sql().contains("DATE_SUB(CAST(? AS DATETIME(6)), INTERVAL `keep` MONTH)"), "{}", sql.sql());
        assert!(sql.sql().contains("`keep` IS NULL AND `created_at` < CAST(? AS DATETIME(6))"), "{}", sql.sql());
        assert_eq!(sql.args()[2], Arg::Text("2026-01-01 00:00:00.000000".into()));
    }

    #[test]
    fn hostile_identities_are_bound_never_written_into_sql() {
        let hostile = "x'; DROP TABLE t; --";
        let s = Subject::new([("email".parse().unwrap(), hostile.to_owned())]);
        for d in [Dialect::Postgres, Dialect::MySql, Dialect::Sqlite] {
            let mut sql = Sql::new(d);
            subject(&mut sql, &target(false), &s).unwrap();
            assert!(!sql.sql().contains("DROP"), "{}", sql.sql());
            assert!(sql.args().contains(&Arg::Text(hostile.into())));
        }
    }

    #[test]
    fn a_subject_without_a_declared_identity_matches_nothing() {
        let s = Subject::new([("phone".parse().unwrap(), "123".to_owned())]);
        let mut sql = Sql::new(Dialect::Sqlite);
        assert!(subject(&mut sql, &target(false), &s).is_none());
        assert_eq!(sql.sql(), "");
        assert!(sql.args().is_empty());
    }
}
