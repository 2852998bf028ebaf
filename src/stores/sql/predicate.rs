//! The WHERE clauses of a resolved target: its filter, a subject's rows,
//! due rows, and rows whose time or period cannot be judged. Values are
//! bound; names come from the catalog. Every bound below which a time is
//! due is rounded *up* to the column's precision, which keeps `t < bound`
//! exactly equivalent to `t < cutoff` for values of that precision.

use jiff::tz::TimeZone;

use super::catalog::{Column, Resolved, TimeKind};
use super::dialect::{Dialect, TypeClass};
use super::statement::Sql;
use crate::api::account::UnreadableReason;
use crate::api::calendar::{round_up_micros, round_up_micros_civil, round_up_millis, round_up_seconds};
use crate::api::policy::{ColumnOperator, TimeFormat};
use crate::stores::due::{Bounds, max_record_period};
use crate::stores::identity::{Identity, Kind};
use crate::stores::{StoreError, Subject};

/// Which rows are due: the bounds for rows without a period of their own,
/// and for each per-record period found in the table.
#[derive(Clone, Debug)]
pub struct DueRule {
    /// For rows whose period column is NULL (or when there is none); `None`
    /// when the target requires a period of every row.
    pub default: Option<Bounds>,
    /// For each per-record period value: its bounds.
    pub periods: Vec<(i64, Bounds)>,
}

/// `column` equals one of `values`, exactly: byte for byte, case and
/// trailing spaces included, without pattern characters.
pub fn equals_any(sql: &mut Sql, column: &Column, values: &[&str]) {
    let d = sql.dialect();
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
            sql.raw(" IN (").join(values.iter(), ", ", |sql, v| {
                sql.text(*v);
            });
            sql.raw(")");
        }
        Dialect::MySql => {
            // MySQL's usual collations ignore case and trailing spaces, so
            // the exact test compares bytes. For utf8mb4 text columns a plain
            // comparison first lets an index narrow the search.
            sql.raw("(");
            if column.class == TypeClass::Text && column.charset.as_deref().is_some_and(|c| c.starts_with("utf8mb4")) {
                sql.ident(&column.name).raw(" IN (").join(values.iter(), ", ", |sql, v| {
                    sql.text(*v);
                });
                sql.raw(") AND ");
            }
            sql.raw("CAST(CONVERT(").ident(&column.name).raw(" USING utf8mb4) AS BINARY) IN (");
            sql.join(values.iter(), ", ", |sql, v| {
                sql.raw("CAST(CONVERT(").text(*v).raw(" USING utf8mb4) AS BINARY)");
            });
            sql.raw("))");
        }
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
    // Rows a Hold keeps are outside the scope of every run: a NULL in an
    // identity column is no match, so such rows stay in scope.
    for (_, identities) in &target.held {
        sql.raw(" AND ");
        held(sql, identities);
        sql.raw(" IS NOT TRUE");
    }
    sql.raw(")");
}

/// Rows of one held subject: `(... OR ...)`, true where a column holds one
/// of its identities.
pub fn held(sql: &mut Sql, identities: &[(Column, Vec<Identity>)]) {
    sql.raw("(1=0");
    for (column, values) in identities {
        sql.raw(" OR ");
        holds_identity(sql, column, values);
    }
    sql.raw(")");
}

/// The subject's identities, checked and normalised (principle 11), by
/// the column that holds each kind. Empty when the target declares no
/// identity the subject has.
pub fn subject_identities<'r>(
    target: &'r Resolved,
    subject: &Subject,
    store: &'static str,
) -> Result<Vec<(&'r Column, Vec<Identity>)>, StoreError> {
    let mut out = Vec::new();
    for (kind, column) in &target.subject {
        let identities = subject
            .values(kind)
            .map(|v| Identity::new(kind, v))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::InvalidTarget { store, detail: e.to_string() })?;
        if !identities.is_empty() {
            out.push((column, identities));
        }
    }
    Ok(out)
}

/// `column` holds one of the identities, matched as their kind says: an
/// e-mail address whole and without regard to case, a phone number in its
/// normalised form (separators dropped, `+` or `00` before the country
/// code), anything else exactly.
fn holds_identity(sql: &mut Sql, column: &Column, identities: &[Identity]) {
    let d = sql.dialect();
    let text = |sql: &mut Sql| {
        match d {
            Dialect::Postgres => sql.raw("CAST(").ident(&column.name).raw(" AS text)"),
            Dialect::MySql => sql.raw("CONVERT(").ident(&column.name).raw(" USING utf8mb4)"),
            Dialect::Sqlite => sql.raw("CAST(").ident(&column.name).raw(" AS TEXT)"),
        };
    };
    let in_list = |sql: &mut Sql, values: Vec<String>| {
        sql.raw(" IN (").join(values, ", ", |sql, v| {
            if d == Dialect::MySql {
                sql.raw("CAST(CONVERT(").text(v).raw(" USING utf8mb4) AS BINARY)");
            } else {
                sql.text(v);
            }
        });
        sql.raw(")");
    };
    let as_bytes = |sql: &mut Sql, inner: &dyn Fn(&mut Sql)| {
        // MySQL's usual collations ignore case, accents and trailing spaces:
        // compare bytes of what was normalised.
        if d == Dialect::MySql {
            sql.raw("CAST(");
            inner(sql);
            sql.raw(" AS BINARY)");
        } else {
            inner(sql);
        }
    };
    let mut parts = 0;
    sql.raw("(");
    let group = |kind: Kind| identities.iter().filter(move |i| i.kind() == kind);
    let emails: Vec<String> = group(Kind::Email).map(|i| i.normalised().to_owned()).collect();
    if !emails.is_empty() {
        as_bytes(sql, &|sql: &mut Sql| {
            sql.raw("LOWER(TRIM(");
            text(sql);
            sql.raw("))");
        });
        in_list(sql, emails);
        parts += 1;
    }
    let phones: Vec<String> = group(Kind::Phone).flat_map(|i| i.spellings()).collect();
    if !phones.is_empty() {
        if parts > 0 {
            sql.raw(" OR ");
        }
        as_bytes(sql, &|sql: &mut Sql| {
            for _ in PHONE_SEPARATORS {
                sql.raw("REPLACE(");
            }
            text(sql);
            for sep in PHONE_SEPARATORS {
                sql.raw(", '").raw(sep).raw("', '')");
            }
        });
        in_list(sql, phones);
        parts += 1;
    }
    let exact: Vec<String> = identities
        .iter()
        .filter(|i| matches!(i.kind(), Kind::Exact | Kind::Ip))
        .map(|i| i.normalised().to_owned())
        .collect();
    if !exact.is_empty() {
        if parts > 0 {
            sql.raw(" OR ");
        }
        let values: Vec<&str> = exact.iter().map(String::as_str).collect();
        equals_any(sql, column, &values);
    }
    sql.raw(")");
}

/// What phone numbers are written with between their digits.
const PHONE_SEPARATORS: [&str; 6] = [" ", "-", ".", "(", ")", "/"];

/// Belongs to the subject: any declared identity column holds one of the
/// subject's identities of that kind, within the target's filter.
pub fn subject(sql: &mut Sql, target: &Resolved, identities: &[(&Column, Vec<Identity>)]) {
    sql.raw("((1=0");
    for (column, values) in identities {
        sql.raw(" OR ");
        holds_identity(sql, column, values);
    }
    sql.raw(") AND ");
    filter(sql, target);
    sql.raw(")");
}

/// The SQL type a bound of the time column is cast to.
fn bound_type(d: Dialect, kind: &TimeKind) -> &'static str {
    match (d, kind) {
        (Dialect::Postgres, TimeKind::Instant) => "timestamptz",
        (Dialect::Postgres, TimeKind::Civil(_)) => "timestamp",
        (Dialect::Postgres, TimeKind::Date(_)) => "date",
        (Dialect::MySql, TimeKind::Instant | TimeKind::Civil(_)) => "DATETIME(6)",
        (Dialect::MySql, TimeKind::Date(_)) => "DATE",
        _ => "",
    }
}

/// The zone civil times and dates of this column were written in.
pub fn column_zone(kind: &TimeKind) -> Option<&TimeZone> {
    match kind {
        TimeKind::Civil(z) | TimeKind::Date(z) => Some(z),
        TimeKind::Dynamic { zone, .. } => zone.as_ref(),
        TimeKind::Instant | TimeKind::Unix(_) | TimeKind::Unzoned { .. } => None,
    }
}

/// `time < bound`, for the column's kind of time.
pub fn time_before(sql: &mut Sql, target: &Resolved, bounds: &Bounds) {
    let d = sql.dialect();
    let kind = &target.time.kind;
    sql.ident(&target.time.column.name).raw(" < ");
    match kind {
        TimeKind::Instant => {
            let t = round_up_micros(bounds.instant);
            let text =
                t.strftime(if d == Dialect::Postgres { "%Y-%m-%d %H:%M:%S%.6f+00" } else { "%Y-%m-%d %H:%M:%S%.6f" });
            sql.cast_text(text.to_string(), bound_type(d, kind));
        }
        TimeKind::Civil(_) => {
            let civil = bounds.civil.expect("a civil column has a zone, so its bounds have a civil bound");
            sql.cast_text(
                round_up_micros_civil(civil).strftime("%Y-%m-%d %H:%M:%S%.6f").to_string(),
                bound_type(d, kind),
            );
        }
        TimeKind::Date(_) => {
            let day = bounds.day.expect("a date column has a zone, so its bounds have a day bound");
            sql.cast_text(day.to_string(), bound_type(d, kind));
        }
        TimeKind::Unix(TimeFormat::UnixMilliseconds) => {
            sql.int(round_up_millis(bounds.instant));
        }
        TimeKind::Unix(_) => {
            sql.int(round_up_seconds(bounds.instant));
        }
        TimeKind::Dynamic { .. } | TimeKind::Unzoned { .. } => {
            unreachable!("judged row by row (SQLite), or refused by Resolved::judges_time")
        }
    }
}

/// The time column holds a time that can be judged (NULL is not one).
pub fn time_readable(sql: &mut Sql, target: &Resolved) {
    let column = &target.time.column.name;
    match (sql.dialect(), &target.time.kind) {
        (_, TimeKind::Unix(_)) => {
            sql.ident(column).raw(" > 0");
        }
        (Dialect::Postgres, kind) => {
            sql.ident(column).raw(" > CAST('-infinity' AS ").raw(bound_type(Dialect::Postgres, kind)).raw(")");
        }
        (Dialect::MySql, _) => {
            sql.raw("(")
                .ident(column)
                .raw(" IS NOT NULL AND MONTH(")
                .ident(column)
                .raw(") <> 0 AND DAYOFMONTH(")
                .ident(column)
                .raw(") <> 0)");
        }
        (Dialect::Sqlite, _) => unreachable!("SQLite times are judged row by row, not in SQL"),
    }
}

/// The time column holds a value that is not a time, and why.
pub fn time_unreadable(sql: &mut Sql, target: &Resolved) -> UnreadableReason {
    let column = &target.time.column.name;
    match (sql.dialect(), &target.time.kind) {
        (_, TimeKind::Unix(_)) => {
            sql.ident(column).raw(" <= 0");
            UnreadableReason::NotATime
        }
        (Dialect::Postgres, kind) => {
            sql.ident(column).raw(" = CAST('-infinity' AS ").raw(bound_type(Dialect::Postgres, kind)).raw(")");
            UnreadableReason::InfiniteTime
        }
        (Dialect::MySql, _) => {
            sql.raw("(MONTH(").ident(column).raw(") = 0 OR DAYOFMONTH(").ident(column).raw(") = 0)");
            UnreadableReason::ZeroDate
        }
        (Dialect::Sqlite, _) => unreachable!("SQLite times are judged row by row, not in SQL"),
    }
}

/// Where a MariaDB time index keeps the zero dates of a column that holds
/// values in `years` (`MariaDbYears::held`): ranges an index answers, each
/// wider than the zero dates in it, so the caller ANDs `time_unreadable`
/// for the exact set. A zero date sorts just before the first day it
/// leaves out: `2025-00-10` and `2025-01-00` after the last instant of 2024
/// and before `2025-01-01`, `2025-06-00` after the last instant of May and
/// before `2025-06-01`, `0000-00-00` before `0000-01-01`. A TIMESTAMP holds
/// one zero date only, `0000-00-00 00:00:00`, below every instant it can
/// hold (from `1970-01-01 00:00:01` UTC; the session is in UTC).
pub fn zero_date_ranges(sql: &mut Sql, target: &Resolved, years: &[i16]) {
    let column = &target.time.column.name;
    let ty = bound_type(Dialect::MySql, &target.time.kind);
    let mut first = true;
    let mut range = |sql: &mut Sql, after: Option<String>, before: String| {
        sql.raw(if first { "(" } else { " OR " });
        first = false;
        if let Some(after) = after {
            sql.ident(column).raw(" > ").cast_text(after, ty).raw(" AND ");
        }
        sql.ident(column).raw(" < ").cast_text(before, ty);
    };
    if matches!(target.time.kind, TimeKind::Instant) {
        range(sql, None, "1970-01-01 00:00:01".into());
    } else {
        for &year in years {
            let before = format!("{year:04}-01-01 00:00:00");
            range(sql, (year > 0).then(|| last_instant_of_month(year - 1, 12)), before);
            for month in 2..=12 {
                range(sql, Some(last_instant_of_month(year, month - 1)), format!("{year:04}-{month:02}-01 00:00:00"));
            }
        }
    }
    if first {
        // No year holds a value: no range holds a zero date.
        sql.raw("(1=0");
    }
    sql.raw(")");
}

/// `YYYY-MM-DD 23:59:59.999999` on the month's last day: past every value
/// of the month a DATETIME(6) or DATE can hold, before its next day 0.
fn last_instant_of_month(year: i16, month: i8) -> String {
    let last = jiff::civil::date(year, month, 1).last_of_month();
    format!("{} 23:59:59.999999", last.strftime("%Y-%m-%d"))
}

/// `column > (the last instant of year)`: the values of later years, zero
/// dates included (`MariaDbYears`).
pub fn after_year(sql: &mut Sql, target: &Resolved, year: i16) {
    let ty = bound_type(Dialect::MySql, &target.time.kind);
    sql.ident(&target.time.column.name).raw(" > ").cast_text(last_instant_of_month(year, 12), ty);
}

/// The per-record period is one the rule can use: `1..=max`.
fn period_valid(sql: &mut Sql, target: &Resolved) {
    if let Some(p) = &target.period {
        sql.ident(&p.column.name).raw(" BETWEEN 1 AND ").int(max_record_period(p.unit));
    }
}

/// The per-record period is unusable: out of range (zero, negative, more
/// than 100 years). Appends `1=0` when there is no period column.
pub fn period_bad(sql: &mut Sql, target: &Resolved) {
    match &target.period {
        None => {
            sql.raw("1=0");
        }
        Some(p) => {
            sql.raw("(").ident(&p.column.name).raw(" IS NOT NULL AND NOT (");
            period_valid(sql, target);
            sql.raw("))");
        }
    }
}

/// Rows whose period is NULL where the target requires one.
pub fn period_missing(sql: &mut Sql, target: &Resolved) -> bool {
    match &target.period {
        Some(p) if p.required => {
            sql.ident(&p.column.name).raw(" IS NULL");
            true
        }
        _ => {
            sql.raw("1=0");
            false
        }
    }
}

/// Due under `rule`: in the filter, with a readable time before the bound
/// of the row's own period (or the policy's, where it has none).
pub fn due(sql: &mut Sql, target: &Resolved, rule: &DueRule) {
    sql.raw("(");
    filter(sql, target);
    sql.raw(" AND ");
    time_readable(sql, target);
    sql.raw(" AND (1=0");
    match &target.period {
        None => {
            if let Some(bounds) = &rule.default {
                sql.raw(" OR ");
                time_before(sql, target, bounds);
            }
        }
        Some(p) => {
            if let Some(bounds) = &rule.default {
                sql.raw(" OR (").ident(&p.column.name).raw(" IS NULL AND ");
                time_before(sql, target, bounds);
                sql.raw(")");
            }
            for (n, bounds) in &rule.periods {
                sql.raw(" OR (").ident(&p.column.name).raw(" = ").int(*n).raw(" AND ");
                time_before(sql, target, bounds);
                sql.raw(")");
            }
        }
    }
    sql.raw("))");
}

/// Rows whose period values the rule must know: readable times in the
/// filter with a usable period (for `SELECT DISTINCT`).
pub fn with_valid_period(sql: &mut Sql, target: &Resolved) {
    filter(sql, target);
    sql.raw(" AND ");
    time_readable(sql, target);
    sql.raw(" AND ");
    period_valid(sql, target);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::TableName;
    use crate::api::policy::{ColumnCondition, PeriodUnit};
    use crate::stores::Cutoff;
    use crate::stores::sql::catalog::{PeriodSpec, TableInfo, TimeColumn};
    use crate::stores::sql::statement::Arg;

    fn col(name: &str, class: TypeClass) -> Column {
        Column { name: name.into(), declared: String::new(), class, charset: Some("utf8mb4".into()) }
    }

    fn target(kind: TimeKind, period: bool) -> Resolved {
        Resolved {
            table: TableInfo {
                name: "t".parse::<TableName>().unwrap(),
                columns: vec![],
                primary_key: vec![],
                partitioned: false,
                rowid: None,
            },
            key: vec![col("id", TypeClass::Integer)],
            time: TimeColumn { column: col("created_at", TypeClass::Other), kind },
            period: period.then(|| PeriodSpec {
                column: col("keep", TypeClass::Integer),
                unit: PeriodUnit::Months,
                required: false,
            }),
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
            drop_partitions: false,
            held: vec![],
        }
    }

    fn rule() -> DueRule {
        let c =
            Cutoff::planned("2025-01-01T00:00:00.000000001Z".parse().unwrap(), "2026-01-01T00:00:00Z".parse().unwrap())
                .unwrap();
        let zone = TimeZone::get("America/New_York").unwrap();
        DueRule { default: Some(c.bounds(Some(&zone)).unwrap()), periods: vec![] }
    }

    #[test]
    fn due_binds_the_rounded_up_cutoff_and_the_filter_values() {
        let mut sql = Sql::new(Dialect::Postgres);
        due(&mut sql, &target(TimeKind::Instant, false), &rule());
        assert_eq!(
            sql.sql(),
            "((1=1 AND \"kind\" IN ($1, $2)) AND \"created_at\" > CAST('-infinity' AS timestamptz) AND (1=0 OR \"created_at\" < CAST($3 AS timestamptz)))"
        );
        assert_eq!(sql.args()[2], Arg::Text("2025-01-01 00:00:00.000001+00".into()));
    }

    #[test]
    fn civil_columns_compare_with_the_wall_clock_of_their_zone() {
        let zone = TimeZone::get("America/New_York").unwrap();
        let mut sql = Sql::new(Dialect::MySql);
        due(&mut sql, &target(TimeKind::Civil(zone), false), &rule());
        assert!(sql.sql().contains("MONTH(`created_at`) <> 0 AND DAYOFMONTH(`created_at`) <> 0"), "{}", sql.sql());
        // Midnight UTC is 19:00 the day before in New York.
        assert_eq!(sql.args().last(), Some(&Arg::Text("2024-12-31 19:00:00.000001".into())));
    }

    #[test]
    fn each_record_period_gets_its_own_bound() {
        let mut r = rule();
        r.periods = vec![(3, r.default.clone().unwrap()), (12, r.default.clone().unwrap())];
        let mut sql = Sql::new(Dialect::Postgres);
        due(&mut sql, &target(TimeKind::Instant, true), &r);
        assert!(sql.sql().contains("(\"keep\" IS NULL AND \"created_at\" < CAST($3 AS timestamptz))"), "{}", sql.sql());
        assert!(sql.sql().contains("(\"keep\" = $4 AND \"created_at\" < CAST($5 AS timestamptz))"), "{}", sql.sql());
        assert_eq!(sql.args()[3], Arg::Int(3));
    }

    #[test]
    fn hostile_identities_are_bound_never_written_into_sql() {
        let hostile = "O'Brien\";DROP--@example.com";
        let s = Subject::new([("email".parse().unwrap(), hostile.to_owned())]);
        for d in [Dialect::Postgres, Dialect::MySql, Dialect::Sqlite] {
            let t = target(TimeKind::Instant, false);
            let ids = subject_identities(&t, &s, "postgres").unwrap();
            let mut sql = Sql::new(d);
            subject(&mut sql, &t, &ids);
            assert!(!sql.sql().contains("rien") && !sql.sql().contains("DROP"), "{}", sql.sql());
            assert!(sql.args().contains(&Arg::Text(hostile.to_lowercase())));
        }
    }

    #[test]
    fn a_subject_without_a_declared_identity_matches_nothing() {
        let s = Subject::new([("phone".parse().unwrap(), "+31 6 1234 5678".to_owned())]);
        let t = target(TimeKind::Instant, false);
        assert!(subject_identities(&t, &s, "postgres").unwrap().is_empty());
    }

    #[test]
    fn a_malformed_identity_is_refused_naming_its_kind_only() {
        let s = Subject::new([("email".parse().unwrap(), "jan".to_owned())]);
        let err = subject_identities(&target(TimeKind::Instant, false), &s, "postgres").unwrap_err().to_string();
        assert!(err.contains("email") && !err.contains("jan"), "{err}");
    }
}
