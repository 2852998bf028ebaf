//! Exactly the due rows go, and every other row stays byte for byte: a
//! property over the real PostgreSQL, MariaDB and SQLite, for every kind of
//! time column (instants; wall-clock times and dates written in a zone,
//! with daylight-saving gaps and folds; SQLite text in many forms), with
//! per-record periods on the policy's calendar, values that are not times,
//! and the planner's own cutoff for random periods, zones and instants.
//!
//! The oracle judges each row in Rust with the store-independent bounds of
//! `stores::due` (themselves proven against the calendar in
//! `api::calendar`); the store judges in SQL. They must agree on every row,
//! and the account must say where every row went.
mod support;

use std::collections::BTreeMap;

use delenda::api::Mode;
use delenda::api::RetentionPeriod;
use delenda::api::account::UnreadableReason;
use delenda::api::policy::{PeriodUnit, Target};
use delenda::stores::due::{Judgement, RecordTime};
use delenda::stores::sql::SqlStore;
use delenda::stores::{Cutoff, PurgeOptions, Store};
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Span, Timestamp};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::json;
use sqlx::AssertSqlSafe;
use support::sql::{Engine, drop_table, exec, ph, snapshot, store, table_name};

/// How the time column holds its times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// timestamptz, MariaDB TIMESTAMP, SQLite text with an offset.
    Instant,
    /// timestamp without time zone, DATETIME, SQLite text without one.
    Civil,
    /// DATE.
    Date,
}

const ZONES: &[&str] =
    &["UTC", "Europe/Amsterdam", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu", "America/Santiago"];

/// A value in the time column.
#[derive(Clone, Debug)]
enum Value {
    Null,
    /// An offset from the column's bound: seconds and microseconds.
    Near(i64, i64),
    /// What legacy data holds: -infinity, zero dates, text that is not a
    /// time, numbers without a declared unit.
    Odd(usize),
}

#[derive(Clone, Debug)]
struct Row {
    id: i64,
    time: Value,
    kind: Option<&'static str>,
    period: Option<i64>,
}

#[derive(Clone, Debug)]
struct Case {
    rows: Vec<Row>,
    period: RetentionPeriod,
    now: Timestamp,
    policy_zone: &'static str,
    column_zone: &'static str,
    filter: Option<(bool, Vec<&'static str>)>,
    period_column: bool,
    /// SQLite instants: which text form each is written in.
    forms: Vec<usize>,
    /// An index on the time column, so a purge may walk it instead of the
    /// whole table (PostgreSQL and MariaDB).
    time_index: bool,
}

fn case() -> impl Strategy<Value = Case> {
    let value = prop_oneof![
        1 => Just(Value::Null),
        2 => Just(Value::Odd(0)),
        2 => (1usize..7).prop_map(Value::Odd),
        12 => (-4 * 86_400i64..4 * 86_400, prop_oneof![Just(0i64), 0..1_000_000i64]).prop_map(|(s, us)| Value::Near(s, us)),
        4 => (-3i64..3, prop_oneof![Just(0i64), Just(999_999), Just(1)]).prop_map(|(s, us)| Value::Near(s, us)),
    ];
    let row = (
        value,
        prop::option::of(prop::sample::select(vec!["a", "b", "c"])),
        prop::option::weighted(0.6, prop_oneof![1i64..30, Just(0), Just(-2), Just(5000)]),
    );
    (
        prop::collection::vec(row, 0..40),
        (0i64..3, 0i64..14, 0i64..3, 0i64..40).prop_filter("longer than zero", |(y, m, w, d)| y + m + w + d > 0),
        // 2019 to 2027: within MariaDB TIMESTAMP's range with every period.
        1_546_300_800i64..1_830_297_600,
        prop::sample::select(ZONES),
        prop::sample::select(ZONES),
        prop::option::of((any::<bool>(), prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 1..3))),
        any::<bool>(),
        (prop::collection::vec(0usize..5, 40), any::<bool>()),
    )
        .prop_map(
            |(rows, (y, m, w, d), now, policy_zone, column_zone, filter, period_column, (forms, time_index))| Case {
                rows: rows
                    .into_iter()
                    .enumerate()
                    .map(|(i, (time, kind, period))| Row { id: i as i64 + 1, time, kind, period })
                    .collect(),
                period: format!("P{y}Y{m}M{w}W{d}D").parse().unwrap(),
                now: Timestamp::from_second(now).unwrap(),
                policy_zone,
                column_zone,
                filter,
                period_column,
                forms,
                time_index,
            },
        )
}

/// What the column's type is called, per engine and kind.
fn column_type(engine: Engine, kind: Kind) -> &'static str {
    match (engine, kind) {
        (Engine::Postgres, Kind::Instant) => "timestamptz",
        (Engine::Postgres, Kind::Civil) => "timestamp",
        (Engine::Postgres, Kind::Date) => "date",
        (Engine::MariaDb, Kind::Instant) => "TIMESTAMP(6) NULL",
        (Engine::MariaDb, Kind::Civil) => "DATETIME(6)",
        (Engine::MariaDb, Kind::Date) => "DATE",
        (Engine::Sqlite, _) => "TEXT",
    }
}

/// Odd values, by engine, with the reason the store must give (`None`:
/// not a time that is due, nor unreadable: never due).
fn odd(engine: Engine, kind: Kind, which: usize) -> (String, Option<UnreadableReason>) {
    if engine == Engine::MariaDb {
        // TIMESTAMP columns cannot hold partial zero dates.
        if kind == Kind::Instant {
            return ("0000-00-00 00:00:00".into(), Some(UnreadableReason::ZeroDate));
        }
        // Zero dates of every shape, in years with data (2019 to 2027) and
        // without: a purge finds them through the time index by year.
        let zero = ["0000-00-00", "2019-03-00", "2019-00-15", "2019-00-00", "0000-07-00", "9999-12-00", "2024-06-00"]
            [which % 7];
        let text = match (kind, which % 7) {
            (Kind::Date, _) => zero.to_owned(),
            (_, 0) => format!("{zero} 00:00:00"),
            _ => format!("{zero} 10:00:00"),
        };
        return (text, Some(UnreadableReason::ZeroDate));
    }
    match (engine, which % 3) {
        (Engine::Postgres, 0) => ("-infinity".into(), Some(UnreadableReason::InfiniteTime)),
        (Engine::Postgres, _) => ("infinity".into(), None),
        (Engine::Sqlite, 0) => ("1716897780".into(), Some(UnreadableReason::AmbiguousNumber)),
        (Engine::Sqlite, 1) => ("2019-02-30 10:00:00".into(), Some(UnreadableReason::NotATime)),
        (Engine::Sqlite, _) => ("next tuesday".into(), Some(UnreadableReason::NotATime)),
        (Engine::MariaDb, _) => unreachable!(),
    }
}

impl Case {
    fn cutoff(&self) -> Cutoff {
        delenda::plan::cutoff(self.period, self.now, &TimeZone::get(self.policy_zone).unwrap()).unwrap()
    }

    fn column_zone(&self) -> TimeZone {
        TimeZone::get(self.column_zone).unwrap()
    }

    /// The value a row holds, as it is written, and as the oracle reads it.
    fn value(
        &self,
        engine: Engine,
        kind: Kind,
        row: &Row,
    ) -> (Option<String>, Result<Option<RecordTime>, UnreadableReason>) {
        let zone = self.column_zone();
        let bounds = self.cutoff().bounds(Some(&zone)).unwrap();
        match &row.time {
            Value::Null => (None, Ok(None)),
            Value::Odd(which) => {
                let (text, reason) = odd(engine, kind, *which);
                (Some(text), reason.map_or(Ok(None), Err))
            }
            Value::Near(secs, micros) => {
                let shift = SignedDuration::new(*secs, (*micros * 1000) as i32);
                match kind {
                    Kind::Instant => {
                        let t =
                            Timestamp::from_microsecond(bounds.instant.checked_add(shift).unwrap().as_microsecond())
                                .unwrap();
                        (Some(self.instant_text(engine, t, row.id)), Ok(Some(RecordTime::Instant(t))))
                    }
                    Kind::Civil => {
                        let v: DateTime = bounds.civil.unwrap().checked_add(shift).unwrap();
                        let v = v.round(jiff::Unit::Microsecond).unwrap();
                        (Some(v.strftime("%Y-%m-%d %H:%M:%S%.6f").to_string()), Ok(Some(RecordTime::Civil(v))))
                    }
                    Kind::Date => {
                        let d: Date = bounds.day.unwrap().checked_add(Span::new().days(secs / 86_400)).unwrap();
                        (Some(d.to_string()), Ok(Some(RecordTime::Day(d))))
                    }
                }
            }
        }
    }

    /// An instant as text: UTC for the servers; for SQLite in one of the
    /// forms applications write (offsets with and without colons, Z, RFC 2822).
    fn instant_text(&self, engine: Engine, t: Timestamp, id: i64) -> String {
        match engine {
            Engine::Postgres => return t.strftime("%Y-%m-%d %H:%M:%S%.6f+00:00").to_string(),
            // MariaDB reads TIMESTAMP text in the session's zone, UTC here.
            Engine::MariaDb => return t.strftime("%Y-%m-%d %H:%M:%S%.6f").to_string(),
            Engine::Sqlite => {}
        }
        let z = t.to_zoned(self.column_zone());
        match self.forms[id as usize % self.forms.len()] {
            0 => t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            1 => z.strftime("%Y-%m-%d %H:%M:%S%.6f%:z").to_string(),
            2 => z.strftime("%Y-%m-%dT%H:%M:%S%.6f%z").to_string(),
            3 if t.subsec_nanosecond() == 0 => jiff::fmt::rfc2822::to_string(&z).unwrap(),
            _ => t.strftime("%Y-%m-%dT%H:%M:%S%.fZ").to_string(),
        }
    }

    fn in_filter(&self, row: &Row) -> bool {
        match &self.filter {
            None => true,
            Some((not, values)) => row.kind.is_some_and(|k| values.contains(&k) != *not),
        }
    }

    /// The oracle: where the row must land.
    fn judge(&self, engine: Engine, kind: Kind, row: &Row) -> Option<Judgement> {
        if !self.in_filter(row) {
            return None;
        }
        let time = match (self.value(engine, kind, row).1, &row.time) {
            (Err(reason), _) => return Some(Judgement::Unreadable(reason)),
            (Ok(None), Value::Null) => return Some(Judgement::NotDue),
            // 'infinity': a time, never due; its period is still checked.
            (Ok(None), _) => None,
            (Ok(Some(t)), _) => Some(t),
        };
        let cutoff = self.cutoff();
        let own = match (self.period_column, row.period) {
            (true, Some(n)) => match cutoff.for_record_period(n, PeriodUnit::Months) {
                None => return Some(Judgement::Unreadable(UnreadableReason::BadPeriod)),
                Some(c) => c.unwrap(),
            },
            _ => cutoff,
        };
        let Some(time) = time else { return Some(Judgement::NotDue) };
        let zone = self.column_zone();
        Some(own.bounds(Some(&zone)).unwrap().judge(&time))
    }

    fn target(&self, table: &str) -> Target {
        let mut spec = json!({"name": table, "timeColumn": "created_at", "timeZone": self.column_zone});
        if let Some((not, values)) = &self.filter {
            spec["filter"] =
                json!([{"column": "kind", "operator": if *not { "NotIn" } else { "In" }, "values": values}]);
        }
        if self.period_column {
            spec["periodColumn"] = json!({"name": "keep_months", "unit": "Months"});
        }
        serde_json::from_value(json!({"name": "t", "dataStoreRef": {"name": "db"}, "table": spec})).unwrap()
    }
}

async fn load(store: &SqlStore, engine: Engine, kind: Kind, case: &Case, table: &str) {
    let (key, text, int) = match engine {
        Engine::Postgres => ("bigint PRIMARY KEY", "text", "integer"),
        Engine::MariaDb => ("BIGINT PRIMARY KEY", "VARCHAR(10)", "INT"),
        Engine::Sqlite => ("INTEGER PRIMARY KEY", "TEXT", "INTEGER"),
    };
    let time = column_type(engine, kind);
    exec(
        store,
        &format!(
            "CREATE TABLE {table} (id {key}, created_at {time}, kind {text} NULL, keep_months {int} NULL){}",
            engine.table_suffix()
        ),
    )
    .await;
    if case.time_index && engine != Engine::Sqlite {
        exec(store, &format!("CREATE INDEX {table}_t ON {table} (created_at)")).await;
    }
    for chunk in case.rows.chunks(40) {
        let mut n = 0;
        let values: Vec<String> = chunk
            .iter()
            .map(|_| {
                let id = ph(store, &mut n);
                let t = ph(store, &mut n);
                let t = if engine == Engine::Postgres { format!("CAST({t} AS {time})") } else { t };
                format!("({id}, {t}, {}, {})", ph(store, &mut n), ph(store, &mut n))
            })
            .collect();
        let sql = format!("INSERT INTO {table} (id, created_at, kind, keep_months) VALUES {}", values.join(", "));
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for row in chunk {
            q = q.bind(row.id).bind(case.value(engine, kind, row).0).bind(row.kind).bind(row.period.map(|p| p as i32));
        }
        q.execute(store.pool()).await.unwrap();
    }
}

fn property(engine: Engine, kind: Kind, cases: u32) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let store = rt.block_on(store(engine));
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    runner
        .run(&case(), |case| {
            rt.block_on(async {
                let table = table_name("due");
                load(&store, engine, kind, &case, &table).await;
                let columns = ["created_at", "kind", "keep_months"];
                let before = snapshot(&store, engine, &table, &columns).await;
                let verdicts: BTreeMap<i64, Option<Judgement>> =
                    case.rows.iter().map(|r| (r.id, case.judge(engine, kind, r))).collect();
                let due: Vec<i64> =
                    verdicts.iter().filter(|(_, j)| **j == Some(Judgement::Due)).map(|(id, _)| *id).collect();
                let mut unreadable: BTreeMap<UnreadableReason, u64> = BTreeMap::new();
                for j in verdicts.values() {
                    if let Some(Judgement::Unreadable(r)) = j {
                        *unreadable.entry(*r).or_default() += 1;
                    }
                }
                let not_due = verdicts.values().filter(|j| **j == Some(Judgement::NotDue)).count() as u64;
                let target = case.target(&table);
                let cutoff = case.cutoff();
                let counted = store.count_due(&target, &cutoff).await;
                let mut options = PurgeOptions::new(Mode::Enforce);
                options.initial_batch_size = 3;
                options.max_batch_size = 5;
                let purged = store.purge_due(&target, &cutoff, &options).await;
                let after = snapshot(&store, engine, &table, &columns).await;
                drop_table(&store, &table).await;
                let counted = counted.map_err(|e| TestCaseError::fail(e.to_string()))?;
                let report = purged.map_err(|e| TestCaseError::fail(e.to_string()))?;
                let account = &report.account;
                prop_assert_eq!(counted, due.len() as u64, "count_due");
                prop_assert_eq!(account.matched, due.len() as u64, "matched");
                prop_assert_eq!(account.deleted, due.len() as u64, "deleted");
                prop_assert_eq!(account.remaining, Some(0));
                let got: BTreeMap<UnreadableReason, u64> =
                    account.unreadable.iter().map(|u| (u.reason, u.count)).collect();
                prop_assert_eq!(got, unreadable, "unreadable, by reason");
                if case.time_index && !case.period_column && engine != Engine::Sqlite {
                    // The purge walked the time index: it read only the due
                    // rows (and those it cannot judge), and says so.
                    prop_assert_eq!(account.not_due, None, "not due, unread");
                } else {
                    prop_assert_eq!(account.not_due, Some(not_due), "not due");
                }
                let kept: Vec<_> = before.into_iter().filter(|(id, _)| !due.contains(id)).collect();
                prop_assert_eq!(after, kept, "rows not due must stay byte for byte");
                Ok(())
            })
        })
        .unwrap();
}

#[test]
fn postgres_timestamptz_rows_go_exactly_when_due() {
    property(Engine::Postgres, Kind::Instant, 24);
}

#[test]
fn postgres_timestamp_without_time_zone_rows_go_exactly_when_due_in_their_zone() {
    property(Engine::Postgres, Kind::Civil, 24);
}

#[test]
fn postgres_date_rows_go_when_their_whole_day_is_due() {
    property(Engine::Postgres, Kind::Date, 16);
}

#[test]
fn mariadb_timestamp_rows_go_exactly_when_due() {
    property(Engine::MariaDb, Kind::Instant, 16);
}

#[test]
fn mariadb_datetime_rows_go_exactly_when_due_in_their_zone() {
    property(Engine::MariaDb, Kind::Civil, 16);
}

#[test]
fn mariadb_date_rows_go_when_their_whole_day_is_due() {
    property(Engine::MariaDb, Kind::Date, 12);
}

#[test]
fn sqlite_text_with_offsets_goes_exactly_when_due() {
    property(Engine::Sqlite, Kind::Instant, 32);
}

#[test]
fn sqlite_text_without_a_zone_goes_exactly_when_due_in_its_zone() {
    property(Engine::Sqlite, Kind::Civil, 32);
}
