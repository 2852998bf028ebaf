//! What real tables hold, against the real PostgreSQL, MariaDB and SQLite:
//! zero dates, times without a zone, month ends and daylight-saving gaps,
//! per-record periods, SQLite text that `julianday()` cannot read,
//! partitions, foreign keys, names folded to lower case, and keys of every
//! shape. Each test is one situation a user met (issue 9), and says what
//! the store must do with it: delete, keep, or count as unreadable.
mod support;

use delenda::api::Mode;
use delenda::api::account::{Account, UnreadableReason};
use delenda::api::policy::Target;
use delenda::stores::sql::SqlStore;
use delenda::stores::{Cutoff, PurgeOptions, Store};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::{Value, json};
use support::sql::{Engine, drop_table, exec, ids, index_rows_read, store, table_name};

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn target(table: &str, spec: Value) -> Target {
    let mut t = json!({"name": table});
    t.as_object_mut().unwrap().extend(spec.as_object().unwrap().clone());
    serde_json::from_value(json!({"name": "t", "dataStoreRef": {"name": "db"}, "table": t})).unwrap()
}

/// The planner's cutoff for `period` at `now` on `zone`'s calendar.
fn cutoff(period: &str, now: &str, zone: &str) -> Cutoff {
    delenda::plan::cutoff(period.parse().unwrap(), ts(now), &TimeZone::get(zone).unwrap()).unwrap()
}

fn enforce() -> PurgeOptions {
    PurgeOptions::new(Mode::Enforce)
}

fn unreadable(account: &Account, reason: UnreadableReason) -> u64 {
    account.unreadable.iter().filter(|u| u.reason == reason).map(|u| u.count).sum()
}

async fn purge(store: &SqlStore, target: &Target, cutoff: &Cutoff) -> Account {
    store.purge_due(target, cutoff, &enforce()).await.unwrap_or_else(|e| panic!("{e}")).account
}

// 1. Zero dates.

#[tokio::test]
async fn mariadb_zero_dates_mean_not_set_and_are_never_deleted() {
    let store = store(Engine::MariaDb).await;
    let t = table_name("contracts");
    exec(&store, &format!("CREATE TABLE {t} (id BIGINT PRIMARY KEY, service_ended_at DATETIME NULL)")).await;
    exec(
        &store,
        &format!(
            "INSERT INTO {t} VALUES (1, '0000-00-00 00:00:00'), (2, '2025-00-10 00:00:00'), (3, '2025-06-00 12:00:00'),
             (4, '2025-01-15 09:00:00'), (5, NULL), (6, '2026-11-29 10:00:00')"
        ),
    )
    .await;
    // "Until end of service": contracts that ended more than a day ago go.
    let target = target(&t, json!({"timeColumn": "service_ended_at", "timeZone": "Europe/Amsterdam"}));
    let account = purge(&store, &target, &cutoff("1d", "2026-11-30T03:00:00Z", "Europe/Amsterdam")).await;
    assert_eq!(ids(&store, &t).await, vec![1, 2, 3, 5, 6], "only the contract that really ended went");
    assert_eq!((account.matched, account.deleted, account.remaining), (1, 1, Some(0)));
    assert_eq!(unreadable(&account, UnreadableReason::ZeroDate), 3, "{account:?}");
    assert_eq!(account.not_due, Some(2), "the running contract and the one with no end");
    assert!(!account.proves_nothing_due_remains(), "zero dates keep the run from being compliant");
    drop_table(&store, &t).await;
}

/// 3,000 rows eight hours apart from 1 January 2024 (to September 2026),
/// with an index on the time column, and the zero dates `zeros`: a purge
/// with the first 8 rows due deletes them, counts every zero date, and
/// reads a few hundred index entries, not the whole index (which the
/// read-back's count of zero dates once did: `MONTH(t) = 0` is no range).
async fn zero_dates_through_the_index(column: &str, value: &str, zeros: &[&str]) {
    let store = store(Engine::MariaDb).await;
    let t = table_name("zeroidx");
    exec(&store, &format!("CREATE TABLE {t} (id BIGINT PRIMARY KEY, at {column} NULL, KEY {t}_at (at))")).await;
    exec(&store, &format!("INSERT INTO {t} SELECT seq, {value} FROM seq_1_to_3000")).await;
    for (i, zero) in zeros.iter().enumerate() {
        exec(&store, &format!("INSERT INTO {t} VALUES ({}, '{zero}')", 10_001 + i)).await;
    }
    exec(&store, &format!("INSERT INTO {t} VALUES (20001, NULL)")).await;
    let before = index_rows_read(&store, &t, None).await;
    let target = target(&t, json!({"timeColumn": "at", "timeZone": "UTC"}));
    let c = Cutoff::planned(ts("2024-01-04T00:00:00Z"), ts("2026-11-30T00:00:00Z")).unwrap();
    let account = purge(&store, &target, &c).await;
    let read = index_rows_read(&store, &t, None).await - before;
    let left = ids(&store, &t).await;
    assert_eq!(left.len(), 3_000 - 8 + zeros.len() + 1, "{account:?}");
    assert!(left.iter().all(|&id| id > 8), "the 8 due rows went, no other: {:?}", &left[..3]);
    assert_eq!((account.matched, account.deleted, account.remaining), (8, 8, Some(0)));
    assert_eq!(unreadable(&account, UnreadableReason::ZeroDate), zeros.len() as u64, "{account:?}");
    assert!(read < 300, "{column}: the purge read {read} index entries of a table of {} rows", left.len() + 8);
    drop_table(&store, &t).await;
}

/// Zero dates of every shape, in years with data and without.
const ZERO_DATETIMES: &[&str] = &[
    "0000-00-00 00:00:00",
    "0000-07-00 00:00:00",
    "2024-00-00 00:00:00",
    "2025-00-10 00:00:00",
    "2025-01-00 08:00:00",
    "2025-06-00 12:00:00",
    "2024-12-00 23:59:59",
    "9999-12-00 00:00:00",
];

#[tokio::test]
async fn mariadb_counts_zero_datetimes_through_the_time_index() {
    zero_dates_through_the_index("DATETIME(6)", "'2024-01-01' + INTERVAL seq * 8 HOUR", ZERO_DATETIMES).await;
}

#[tokio::test]
async fn mariadb_counts_zero_dates_through_the_date_index() {
    let dates: Vec<&str> = ZERO_DATETIMES.iter().map(|z| &z[..10]).collect();
    zero_dates_through_the_index("DATE", "DATE('2024-01-01' + INTERVAL seq * 8 HOUR)", &dates).await;
}

#[tokio::test]
async fn mariadb_counts_zero_timestamps_through_the_time_index() {
    // A TIMESTAMP holds one zero date only.
    let zeros = ["0000-00-00 00:00:00", "0000-00-00 00:00:00"];
    zero_dates_through_the_index("TIMESTAMP", "'2024-01-01' + INTERVAL seq * 8 HOUR", &zeros).await;
}

#[tokio::test]
async fn postgres_minus_infinity_is_no_time_and_is_kept() {
    let store = store(Engine::Postgres).await;
    let t = table_name("contracts");
    exec(
        &store,
        &format!(
            "CREATE TABLE {t} (id bigint PRIMARY KEY, ended_at timestamptz);
        INSERT INTO {t} VALUES (1, '-infinity'), (2, 'infinity'), (3, '2020-01-01 00:00:00+00'), (4, NULL)"
        ),
    )
    .await;
    let account =
        purge(&store, &target(&t, json!({"timeColumn": "ended_at"})), &cutoff("1d", "2026-11-30T03:00:00Z", "UTC"))
            .await;
    assert_eq!(ids(&store, &t).await, vec![1, 2, 4]);
    assert_eq!(unreadable(&account, UnreadableReason::InfiniteTime), 1);
    assert_eq!(account.not_due, Some(2));
    drop_table(&store, &t).await;
}

// 2. Times without a zone.

/// Rows written in New York wall time; the run is at 12:00Z on 30 November
/// with a one-day period: 29 November 12:00Z (07:00 in New York) is the
/// last due instant. Read as UTC, 09:00 New York (14:00Z) went five hours
/// early.
async fn naive_times_in_new_york(engine: Engine, column: &str) {
    let store = store(engine).await;
    let t = table_name("calls");
    exec(&store, &format!("CREATE TABLE {t} (id BIGINT PRIMARY KEY, started_at {column})")).await;
    exec(
        &store,
        &format!(
            "INSERT INTO {t} VALUES (1, '2026-11-29 06:59:59'), (2, '2026-11-29 07:00:00'), (3, '2026-11-29 09:00:00'), (4, '2026-11-28 23:00:00')"
        ),
    )
    .await;
    let c = cutoff("1d", "2026-11-30T12:00:00Z", "UTC");
    let unzoned = target(&t, json!({"timeColumn": "started_at"}));
    match store.purge_due(&unzoned, &c, &enforce()).await {
        // A column type without a zone is refused before anything is read.
        Err(failed) => {
            let message = failed.error.to_string();
            assert_eq!(failed.error.reason(), "InvalidTarget", "{message}");
            assert!(message.contains("started_at") && message.contains("timeZone"), "{message}");
        }
        // SQLite text may carry offsets row by row: those without one are
        // counted as unreadable, not guessed at.
        Ok(report) => {
            assert_eq!(engine, Engine::Sqlite);
            assert_eq!(unreadable(&report.account, UnreadableReason::NoTimeZone), 4, "{:?}", report.account);
            assert_eq!(report.account.deleted, 0);
        }
    }
    assert_eq!(ids(&store, &t).await.len(), 4, "nothing deleted without a zone");

    let zoned = target(&t, json!({"timeColumn": "started_at", "timeZone": "America/New_York"}));
    let account = purge(&store, &zoned, &c).await;
    assert_eq!(ids(&store, &t).await, vec![3], "{engine:?}: rows up to 07:00 New York time went");
    assert_eq!(account.deleted, 3);
    drop_table(&store, &t).await;
}

#[tokio::test]
async fn postgres_timestamp_without_time_zone_is_read_in_the_declared_zone() {
    naive_times_in_new_york(Engine::Postgres, "timestamp").await;
}

#[tokio::test]
async fn mariadb_datetime_is_read_in_the_declared_zone() {
    naive_times_in_new_york(Engine::MariaDb, "DATETIME").await;
}

#[tokio::test]
async fn sqlite_text_without_an_offset_is_read_in_the_declared_zone() {
    naive_times_in_new_york(Engine::Sqlite, "TEXT").await;
}

#[tokio::test]
async fn the_datastores_zone_applies_where_the_target_names_none() {
    let base = store(Engine::Postgres).await;
    let t = table_name("calls");
    exec(
        &base,
        &format!(
            "CREATE TABLE {t} (id bigint PRIMARY KEY, started_at timestamp);
        INSERT INTO {t} VALUES (1, '2026-11-29 06:59:59'), (2, '2026-11-29 09:00:00')"
        ),
    )
    .await;
    let store = base.clone().with_time_zone(Some(TimeZone::get("America/New_York").unwrap()));
    purge(&store, &target(&t, json!({"timeColumn": "started_at"})), &cutoff("1d", "2026-11-30T12:00:00Z", "UTC")).await;
    assert_eq!(ids(&base, &t).await, vec![2]);
    drop_table(&base, &t).await;
}

#[tokio::test]
async fn a_date_names_a_whole_day_in_its_zone() {
    for engine in [Engine::Postgres, Engine::MariaDb] {
        let store = store(engine).await;
        let t = table_name("days");
        exec(&store, &format!("CREATE TABLE {t} (id BIGINT PRIMARY KEY, day DATE)")).await;
        exec(&store, &format!("INSERT INTO {t} VALUES (1, '2026-11-27'), (2, '2026-11-28'), (3, '2026-11-29')")).await;
        // The line is 29 November 07:00 in New York: 28 November is wholly
        // before it, 29 November is not.
        let target = target(&t, json!({"timeColumn": "day", "timeZone": "America/New_York"}));
        purge(&store, &target, &cutoff("1d", "2026-11-30T12:00:00Z", "UTC")).await;
        assert_eq!(ids(&store, &t).await, vec![3], "{engine:?}");
        drop_table(&store, &t).await;
    }
}

// 3. The cutoff is not the inverse of the period.

#[tokio::test]
async fn a_period_counts_from_each_record_not_back_from_now() {
    let store = store(Engine::Postgres).await;
    let t = table_name("tickets");
    exec(
        &store,
        &format!(
            "CREATE TABLE {t} (id bigint PRIMARY KEY, created_at timestamptz);
        INSERT INTO {t} VALUES (1, '2026-01-28 02:00:00+00'), (2, '2026-01-28 03:00:00+00'),
                               (3, '2026-01-30 10:00:00+00'), (4, '2026-01-31 02:00:00+00')"
        ),
    )
    .await;
    // 30 January + 1 month = 28 February (clamped) + 1 day = 1 March 10:00:
    // after a run at 03:00; counting back from now (31 January 03:00)
    // deleted it. 31 January 02:00 ends on 1 March 02:00 and is due by
    // itself, but it was written after a record that is not: it waits for
    // the next run rather than let the cutoff jump past record 3.
    purge(&store, &target(&t, json!({"timeColumn": "created_at"})), &cutoff("1mo1d", "2026-03-01T03:00:00Z", "UTC"))
        .await;
    assert_eq!(ids(&store, &t).await, vec![3, 4]);
    drop_table(&store, &t).await;
}

#[tokio::test]
async fn a_cutoff_in_a_daylight_saving_gap_deletes_nothing_early() {
    let store = store(Engine::Postgres).await;
    let t = table_name("visits");
    exec(&store, &format!("CREATE TABLE {t} (id bigint PRIMARY KEY, at timestamptz);
        INSERT INTO {t} VALUES (1, '2026-03-29 00:59:59+00'), (2, '2026-03-29 01:15:00+00'), (3, '2026-03-29 01:45:00+00')")).await;
    // One day before 30 March 02:30 CEST is 29 March 02:30, a wall time
    // Amsterdam skipped. Resolved to the later side it is 01:30Z, which
    // deleted the visit of 01:15Z (03:15 CEST, due at 03:15 CEST on the 30th).
    purge(&store, &target(&t, json!({"timeColumn": "at"})), &cutoff("1d", "2026-03-30T00:30:00Z", "Europe/Amsterdam"))
        .await;
    assert_eq!(ids(&store, &t).await, vec![2, 3]);
    drop_table(&store, &t).await;
}

// 4. Per-record periods.

async fn zero_period(engine: Engine) {
    let store = store(engine).await;
    let t = table_name("recordings");
    let time = if engine == Engine::Postgres { "timestamptz" } else { "TEXT" };
    let time = if engine == Engine::MariaDb { "TIMESTAMP NULL" } else { time };
    exec(
        &store,
        &format!(
            "CREATE TABLE {t} (id BIGINT PRIMARY KEY, created_at {time}, keep_months INT NULL, keep_always INT NULL)"
        ),
    )
    .await;
    let old = if engine == Engine::Sqlite { "2020-01-01T00:00:00Z" } else { "2020-01-01 00:00:00" };
    exec(&store, &format!("INSERT INTO {t} VALUES (1, '{old}', 0, 1), (2, '{old}', -3, 1), (3, '{old}', 12, NULL), (4, '{old}', NULL, 1), (5, '{old}', 9999, 1)")).await;
    let c = cutoff("1y", "2026-11-30T03:00:00Z", "Europe/Amsterdam");
    let own = target(
        &t,
        json!({"timeColumn": "created_at", "timeZone": "UTC", "periodColumn": {"name": "keep_months", "unit": "Months"}}),
    );
    let account = purge(&store, &own, &c).await;
    assert_eq!(
        ids(&store, &t).await,
        vec![1, 2, 5],
        "{engine:?}: a period of 0 or less, or over 100 years, deletes nothing"
    );
    assert_eq!(unreadable(&account, UnreadableReason::BadPeriod), 3, "{engine:?}: {account:?}");
    // A required period that is NULL is unreadable too.
    let required = target(
        &t,
        json!({"timeColumn": "created_at", "timeZone": "UTC", "periodColumn": {"name": "keep_always", "unit": "Months", "required": true}}),
    );
    exec(&store, &format!("INSERT INTO {t} VALUES (6, '{old}', 1, NULL)")).await;
    let account = purge(&store, &required, &c).await;
    assert_eq!(unreadable(&account, UnreadableReason::MissingPeriod), 1, "{engine:?}: {account:?}");
    assert!(ids(&store, &t).await.contains(&6));
    drop_table(&store, &t).await;
}

#[tokio::test]
async fn postgres_record_periods_of_zero_are_unreadable_not_delete_now() {
    zero_period(Engine::Postgres).await;
}

#[tokio::test]
async fn mariadb_record_periods_of_zero_are_unreadable_not_delete_now() {
    zero_period(Engine::MariaDb).await;
}

#[tokio::test]
async fn sqlite_record_periods_of_zero_are_unreadable_not_delete_now() {
    zero_period(Engine::Sqlite).await;
}

#[tokio::test]
async fn record_periods_count_on_the_policys_calendar() {
    for engine in [Engine::Postgres, Engine::MariaDb, Engine::Sqlite] {
        let store = store(engine).await;
        let t = table_name("recordings");
        let time = match engine {
            Engine::Postgres => "timestamptz",
            Engine::MariaDb => "TIMESTAMP NULL",
            Engine::Sqlite => "TEXT",
        };
        exec(&store, &format!("CREATE TABLE {t} (id BIGINT PRIMARY KEY, created_at {time}, keep_months INT)")).await;
        let (a, b) = if engine == Engine::Sqlite {
            ("2026-02-28T23:30:00Z", "2026-02-27T23:30:00Z")
        } else {
            ("2026-02-28 23:30:00", "2026-02-27 23:30:00")
        };
        exec(&store, &format!("INSERT INTO {t} VALUES (1, '{a}', 1), (2, '{b}', 1)")).await;
        // In Amsterdam, 28 February 23:30Z is 1 March 00:30; one month later
        // is 1 April 00:30 CEST, 31 March 22:30Z: after a run at 22:29Z. On
        // the UTC calendar it ended on 28 March, and it was deleted.
        let c = cutoff("3y", "2026-03-31T22:29:00Z", "Europe/Amsterdam");
        let target =
            target(&t, json!({"timeColumn": "created_at", "periodColumn": {"name": "keep_months", "unit": "Months"}}));
        purge(&store, &target, &c).await;
        assert_eq!(ids(&store, &t).await, vec![1], "{engine:?}");
        drop_table(&store, &t).await;
    }
}

// 7. SQLite text julianday() cannot read.

#[tokio::test]
async fn sqlite_times_in_other_forms_are_read_exactly_or_counted_as_unreadable() {
    let store = store(Engine::Sqlite).await;
    exec(&store, "CREATE TABLE visits (id INTEGER PRIMARY KEY, at TEXT)").await;
    exec(
        &store,
        "INSERT INTO visits VALUES (1, '1577872800'), (2, '1577872800000'), (3, '2020-01-01 10:00:00+0000'),
         (4, 'Wed, 01 Jan 2020 10:00:00 +0000'), (5, 'garbage'), (6, '2020-02-30 10:00:00Z'), (7, '2026-11-29T23:00:00Z'),
         (8, 2458849.5)",
    )
    .await;
    let c = cutoff("1y", "2026-11-30T03:00:00Z", "UTC");
    let account = purge(&store, &target("visits", json!({"timeColumn": "at"})), &c).await;
    assert_eq!(
        ids(&store, "visits").await,
        vec![1, 2, 5, 6, 7, 8],
        "+0000 offsets and RFC 2822 are times, and were due"
    );
    assert_eq!(
        unreadable(&account, UnreadableReason::AmbiguousNumber),
        3,
        "seconds, milliseconds or a Julian day? {account:?}"
    );
    assert_eq!(unreadable(&account, UnreadableReason::NotATime), 2, "{account:?}");
    assert_eq!(account.remaining, Some(0));
    assert!(!account.proves_nothing_due_remains(), "a run that left values it could not read is not compliant");

    // Declared as seconds since 1970, an integer column is read.
    exec(&store, "CREATE TABLE events (id INTEGER PRIMARY KEY, at INTEGER)").await;
    exec(&store, "INSERT INTO events VALUES (1, 1577872800), (2, 0), (3, 1795000000)").await;
    let err = store.purge_due(&target("events", json!({"timeColumn": "at"})), &c, &enforce()).await.unwrap_err().error;
    assert!(err.to_string().contains("timeFormat"), "{err}");
    let account = purge(&store, &target("events", json!({"timeColumn": "at", "timeFormat": "UnixSeconds"})), &c).await;
    assert_eq!(ids(&store, "events").await, vec![2, 3]);
    assert_eq!(unreadable(&account, UnreadableReason::NotATime), 1, "0 is 'not set', not 1970");
}

#[tokio::test]
async fn integer_columns_of_seconds_or_milliseconds_work_on_every_engine() {
    for engine in [Engine::Postgres, Engine::MariaDb] {
        let store = store(engine).await;
        let t = table_name("events");
        exec(&store, &format!("CREATE TABLE {t} (id BIGINT PRIMARY KEY, at_ms BIGINT)")).await;
        exec(&store, &format!("INSERT INTO {t} VALUES (1, 1577872800000), (2, 0), (3, 1795000000000), (4, -5)")).await;
        let c = cutoff("1y", "2026-11-30T03:00:00Z", "UTC");
        let account =
            purge(&store, &target(&t, json!({"timeColumn": "at_ms", "timeFormat": "UnixMilliseconds"})), &c).await;
        assert_eq!(ids(&store, &t).await, vec![2, 3, 4], "{engine:?}");
        assert_eq!(unreadable(&account, UnreadableReason::NotATime), 2, "{engine:?}");
        drop_table(&store, &t).await;
    }
}

// 8. Partitions.

#[tokio::test]
async fn postgres_drops_partitions_that_lie_wholly_before_the_cutoff() {
    let store = store(Engine::Postgres).await;
    let t = table_name("cdrs");
    exec(
        &store,
        &format!(
            "CREATE TABLE {t} (id bigint, started_at timestamptz NOT NULL) PARTITION BY RANGE (started_at);
             CREATE TABLE {t}_old PARTITION OF {t} FOR VALUES FROM (MINVALUE) TO ('2026-01-01 00:00:00+00');
             CREATE TABLE {t}_2026_01 PARTITION OF {t} FOR VALUES FROM ('2026-01-01 00:00:00+00') TO ('2026-02-01 00:00:00+00');
             CREATE TABLE {t}_2026_05 PARTITION OF {t} FOR VALUES FROM ('2026-05-01 00:00:00+00') TO ('2026-06-01 00:00:00+00');
             CREATE TABLE {t}_rest PARTITION OF {t} DEFAULT;
             INSERT INTO {t} SELECT g, '2025-06-01'::timestamptz + g * interval '1 hour' FROM generate_series(1, 100) g;
             INSERT INTO {t} VALUES (200, '-infinity');
             INSERT INTO {t} SELECT 300 + g, '2026-01-01'::timestamptz + g * interval '1 hour' FROM generate_series(0, 49) g;
             INSERT INTO {t} SELECT 400 + g, '2026-05-02'::timestamptz + g * interval '12 hours' FROM generate_series(0, 59) g;
             INSERT INTO {t} SELECT 500 + g, '2026-03-01'::timestamptz + g * interval '1 day' FROM generate_series(0, 9) g;"
        ),
    )
    .await;
    // Six months before 30 November: 30 May. January's partition is wholly
    // before it and goes whole; the old one holds -infinity and is purged
    // row by row; May's reaches past the cutoff and is purged row by row;
    // the default partition is never dropped.
    let c = cutoff("6mo", "2026-11-30T12:00:00Z", "UTC");
    let account = purge(
        &store,
        &target(&t, json!({"timeColumn": "started_at", "keyColumn": "id", "dropExpiredPartitions": true})),
        &c,
    )
    .await;
    let dropped: Vec<(String, u64)> = account.dropped.iter().map(|d| (d.name.clone(), d.records)).collect();
    assert_eq!(dropped, vec![(format!("{t}_2026_01"), 50)], "{account:?}");
    let parts: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = '{t}'::regclass"
    )))
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(parts, 3, "the other partitions stay");
    // 100 old rows, 50 in January, 58 of May's 60 (up to 30 May 12:00), 10 of March.
    assert_eq!(account.deleted, 100 + 50 + 58 + 10, "{account:?}");
    assert_eq!(unreadable(&account, UnreadableReason::InfiniteTime), 1);
    let left = ids(&store, &t).await;
    assert_eq!(left, vec![200, 458, 459], "-infinity and the last two May rows stay");
    exec(&store, &format!("DROP TABLE {t}")).await;
}

/// Daily partitions of each kind of time a range partition can be keyed
/// on, many of them (their bounds are compared in one statement), one
/// ending exactly on the due bound: a partition goes whole exactly when
/// every row it can hold is due, and the rows deleted are exactly those an
/// unpartitioned twin of the table loses.
#[tokio::test]
async fn postgres_drops_each_daily_partition_wholly_due_whatever_its_time_type() {
    let store = store(Engine::Postgres).await;
    // Six months before 30 November 12:00 UTC: due before 30 May 12:00, so
    // 29 May's partition (up to 30 May 00:00) is the last to go whole and
    // 30 May's is purged row by row.
    let c = cutoff("6mo", "2026-11-30T12:00:00Z", "UTC");
    let days = 40; // 1 May to 9 June.
    let kinds = [
        ("date", "day", json!({"timeZone": "UTC"})),
        ("timestamp", "local", json!({"timeZone": "UTC"})),
        ("bigint", "epoch", json!({"timeFormat": "UnixSeconds"})),
    ];
    // The start of day `d` after 1 May, and the time of row `g` (every 5
    // hours from 1 May), as each type writes them.
    let at = |sql_type: &str, d: i64| match sql_type {
        "date" => format!("'2026-05-01'::date + {d}"),
        "timestamp" => format!("'2026-05-01 00:00:00'::timestamp + {d} * interval '1 day'"),
        _ => format!("{}", 1_777_593_600 + d * 86_400),
    };
    for (sql_type, column, extra) in kinds {
        let (t, twin) = (table_name("daily"), table_name("twin"));
        let mut ddl = format!(
            "CREATE TABLE {t} (id bigint, {column} {sql_type} NOT NULL) PARTITION BY RANGE ({column});
             CREATE TABLE {twin} (id bigint, {column} {sql_type} NOT NULL);"
        );
        for d in 0..days {
            let (from, to) = (at(sql_type, d), at(sql_type, d + 1));
            ddl += &format!("CREATE TABLE {t}_{d:02} PARTITION OF {t} FOR VALUES FROM ({from}) TO ({to});");
        }
        let value = match sql_type {
            "date" => "'2026-05-01'::date + (g * 5 / 24)".to_owned(),
            "timestamp" => "'2026-05-01 00:00:00'::timestamp + g * interval '5 hours'".to_owned(),
            _ => "1777593600 + g * 18000".to_owned(),
        };
        let rows = days * 24 / 5;
        ddl += &format!(
            "INSERT INTO {t} SELECT g, {value} FROM generate_series(0, {}) g;
             INSERT INTO {twin} SELECT * FROM {t};",
            rows - 1
        );
        exec(&store, &ddl).await;
        let mut spec = json!({"timeColumn": column, "keyColumn": "id", "dropExpiredPartitions": true});
        spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let account = purge(&store, &target(&t, spec.clone()), &c).await;
        spec.as_object_mut().unwrap().remove("dropExpiredPartitions");
        let twin_account = purge(&store, &target(&twin, spec), &c).await;
        let dropped: Vec<String> = account.dropped.iter().map(|d| d.name.clone()).collect();
        let expected: Vec<String> = (0..29).map(|d| format!("{t}_{d:02}")).collect();
        assert_eq!(dropped, expected, "{sql_type}: 1 to 29 May go whole, 30 May on stays");
        let in_dropped: u64 = account.dropped.iter().map(|d| d.records).sum();
        assert!(in_dropped > 0, "{sql_type}: {account:?}");
        assert_eq!(account.deleted, twin_account.deleted, "{sql_type}: as many rows as the twin loses");
        assert_eq!(ids(&store, &t).await, ids(&store, &twin).await, "{sql_type}: the same rows stay");
        assert_eq!(account.remaining, Some(0), "{sql_type}: {account:?}");
        exec(&store, &format!("DROP TABLE {t}; DROP TABLE {twin}")).await;
    }
}

#[tokio::test]
async fn drop_expired_partitions_is_refused_where_it_cannot_apply() {
    let c = cutoff("6mo", "2026-11-30T12:00:00Z", "UTC");
    let pg = store(Engine::Postgres).await;
    let plain = table_name("plain");
    let by_id = table_name("byid");
    exec(
        &pg,
        &format!(
            "CREATE TABLE {plain} (id bigint PRIMARY KEY, at timestamptz);
        CREATE TABLE {by_id} (id bigint, at timestamptz) PARTITION BY RANGE (id);"
        ),
    )
    .await;
    let flag = |t: &str| target(t, json!({"timeColumn": "at", "dropExpiredPartitions": true}));
    let err = pg.purge_due(&flag(&plain), &c, &enforce()).await.unwrap_err().error.to_string();
    assert!(err.contains("is not partitioned"), "{err}");
    let err = pg.purge_due(&flag(&by_id), &c, &enforce()).await.unwrap_err().error.to_string();
    assert!(err.contains("not partitioned by range on its time column") && err.contains("key id"), "{err}");
    let filtered = target(
        &by_id,
        json!({"timeColumn": "at", "dropExpiredPartitions": true, "filter": [{"column": "id", "operator": "IsNotNull"}]}),
    );
    let err = pg.purge_due(&filtered, &c, &enforce()).await.unwrap_err().error.to_string();
    assert!(err.contains("filter or periodColumn"), "{err}");
    for engine in [Engine::MariaDb, Engine::Sqlite] {
        let store = store(engine).await;
        let t = table_name("rows");
        exec(&store, &format!("CREATE TABLE {t} (id BIGINT PRIMARY KEY, at TIMESTAMP NULL)")).await;
        let err = store.purge_due(&flag(&t), &c, &enforce()).await.unwrap_err().error.to_string();
        assert!(err.contains("dropExpiredPartitions works on PostgreSQL"), "{engine:?}: {err}");
        drop_table(&store, &t).await;
    }
    exec(&pg, &format!("DROP TABLE {plain}; DROP TABLE {by_id}")).await;
}

// 9. Foreign keys that restrict.

async fn restricted(engine: Engine) {
    let store = store(engine).await;
    let parent = table_name("customers");
    let child = table_name("invoices");
    let time = if engine == Engine::Postgres { "timestamptz" } else { "TEXT" };
    let time = if engine == Engine::MariaDb { "TIMESTAMP NULL" } else { time };
    exec(&store, &format!("CREATE TABLE {parent} (id BIGINT PRIMARY KEY, ended_at {time}){}", engine.table_suffix()))
        .await;
    exec(&store, &format!(
        "CREATE TABLE {child} (id BIGINT PRIMARY KEY, customer_id BIGINT, CONSTRAINT fk_invoice_customer FOREIGN KEY (customer_id) REFERENCES {parent} (id) ON DELETE RESTRICT){}",
        engine.table_suffix()
    )).await;
    let old = if engine == Engine::Sqlite { "2020-01-01T00:00:00Z" } else { "2020-01-01 00:00:00" };
    let values: Vec<String> = (1..=30).map(|i| format!("({i}, '{old}')")).collect();
    exec(&store, &format!("INSERT INTO {parent} VALUES {}", values.join(", "))).await;
    exec(&store, &format!("INSERT INTO {parent} VALUES (31, NULL)")).await;
    exec(&store, &format!("INSERT INTO {child} VALUES (1, 25), (2, 26), (3, 31)")).await;
    let c = cutoff("1y", "2026-11-30T03:00:00Z", "UTC");
    let mut options = enforce();
    options.initial_batch_size = 5;
    options.max_batch_size = 5;
    let bare = target(&parent, json!({"timeColumn": "ended_at", "timeZone": "UTC"}));
    let failed = store.purge_due(&bare, &c, &options).await.unwrap_err();
    let message = failed.error.to_string();
    assert_eq!(failed.error.reason(), "ReferencedByOtherRecords", "{engine:?}: {message}");
    assert!(message.contains(&child), "{engine:?}: the error names the referring table: {message}");
    if engine != Engine::Sqlite {
        assert!(message.contains("fk_invoice_customer"), "{engine:?}: and its constraint: {message}");
    }
    let deleted = failed.report.account.deleted;
    assert!(deleted > 0, "{engine:?}: earlier batches deleted rows, and the report says so");
    assert_eq!(ids(&store, &parent).await.len() as u64, 31 - deleted);
    // Following the advice works: declared children go first.
    let with_children = target(
        &parent,
        json!({"timeColumn": "ended_at", "timeZone": "UTC", "children": [{"name": child, "foreignKey": "customer_id"}]}),
    );
    let account =
        store.purge_due(&with_children, &c, &options).await.unwrap_or_else(|e| panic!("{engine:?}: {e}")).account;
    assert_eq!(ids(&store, &parent).await, vec![31], "{engine:?}");
    assert_eq!(ids(&store, &child).await, vec![3], "{engine:?}: the invoice of the customer kept stays");
    assert_eq!(account.related_deleted, 2, "{engine:?}");
    drop_table(&store, &child).await;
    drop_table(&store, &parent).await;
}

#[tokio::test]
async fn postgres_a_restricting_foreign_key_is_named_and_children_are_purged_first() {
    restricted(Engine::Postgres).await;
}

#[tokio::test]
async fn mariadb_a_restricting_foreign_key_is_named_and_children_are_purged_first() {
    restricted(Engine::MariaDb).await;
}

#[tokio::test]
async fn sqlite_a_restricting_foreign_key_is_named_and_children_are_purged_first() {
    restricted(Engine::Sqlite).await;
}

/// A unique `keyColumn` that holds NULLs, walked in windows of keys
/// (MariaDB with children, which go first) or named on SQLite (which walks
/// its rowid): the due rows without a key go too, with their children,
/// and the others stay. Before, the first key was NULL and the purge
/// failed to read it, deleting nothing.
async fn null_keys_in_windows(engine: Engine, with_children: bool) {
    let store = store(engine).await;
    let (parent, child) = (table_name("lines"), table_name("usage"));
    let (time, due, kept) = match engine {
        Engine::Sqlite => ("TEXT", "2020-01-01T00:00:00Z", "2026-11-29T00:00:00Z"),
        _ => ("DATETIME NULL", "2020-01-01 00:00:00", "2026-11-29 00:00:00"),
    };
    let suffix = engine.table_suffix();
    exec(
        &store,
        &format!("CREATE TABLE {parent} (id BIGINT PRIMARY KEY, ref VARCHAR(20) NULL UNIQUE, at {time}){suffix}"),
    )
    .await;
    exec(&store, &format!(
        "CREATE TABLE {child} (id BIGINT PRIMARY KEY, line_id BIGINT, FOREIGN KEY (line_id) REFERENCES {parent} (id) ON DELETE RESTRICT){suffix}"
    ))
    .await;
    // Lines 1 to 7 have no reference; every third is not due.
    let rows: Vec<String> = (1..=15)
        .map(|id| {
            let reference = if id <= 7 { "NULL".to_owned() } else { format!("'r{id:02}'") };
            format!("({id}, {reference}, '{}')", if id % 3 == 0 { kept } else { due })
        })
        .collect();
    exec(&store, &format!("INSERT INTO {parent} VALUES {}", rows.join(", "))).await;
    // A usage record for each of lines 1 to 6 and 10.
    exec(
        &store,
        &format!("INSERT INTO {child} VALUES (101, 1), (102, 2), (103, 3), (104, 4), (105, 5), (106, 6), (110, 10)"),
    )
    .await;
    let mut options = enforce();
    options.initial_batch_size = 2;
    options.max_batch_size = 5;
    let mut spec = json!({"timeColumn": "at", "keyColumn": "ref", "timeZone": "UTC"});
    if with_children {
        spec["children"] = json!([{"name": child, "foreignKey": "line_id", "parentKey": "id"}]);
    } else {
        exec(&store, &format!("DELETE FROM {child}")).await;
    }
    let c = cutoff("6mo", "2026-11-30T12:00:00Z", "UTC");
    if engine == Engine::MariaDb {
        // Rows without a key go together: more of them than a batch may
        // take is refused, naming the column, and nothing is deleted.
        let mut small = enforce();
        small.max_batch_size = 4;
        let failed = store.purge_due(&target(&parent, spec.clone()), &c, &small).await.unwrap_err();
        let message = failed.error.to_string();
        assert!(message.contains("5 rows") && message.contains("have no ref (NULL)"), "{message}");
        assert_eq!((failed.report.account.deleted, ids(&store, &parent).await.len()), (0, 15), "{message}");
    }
    let report =
        store.purge_due(&target(&parent, spec), &c, &options).await.unwrap_or_else(|e| panic!("{engine:?}: {e}"));
    assert_eq!((report.account.deleted, report.account.remaining), (10, Some(0)), "{engine:?}: {:?}", report.account);
    assert_eq!(ids(&store, &parent).await, vec![3, 6, 9, 12, 15], "{engine:?}");
    if with_children {
        assert_eq!(ids(&store, &child).await, vec![103, 106], "{engine:?}: the usage of the lines kept stays");
        assert_eq!(report.account.related_deleted, 5, "{engine:?}");
    }
    drop_table(&store, &child).await;
    drop_table(&store, &parent).await;
}

#[tokio::test]
async fn mariadb_due_rows_whose_unique_key_is_null_go_with_their_children() {
    null_keys_in_windows(Engine::MariaDb, true).await;
}

#[tokio::test]
async fn sqlite_due_rows_whose_unique_key_is_null_are_purged_too() {
    null_keys_in_windows(Engine::Sqlite, false).await;
    null_keys_in_windows(Engine::Sqlite, true).await;
}

// 10. Names folded to lower case.

#[tokio::test]
async fn postgres_a_table_created_unquoted_is_found_by_its_stored_name() {
    let store = store(Engine::Postgres).await;
    let t = table_name("CallRecords").replace("callrecords", "CallRecords");
    exec(&store, &format!("CREATE TABLE {t} (id bigint PRIMARY KEY, StartedAt timestamptz)")).await;
    let stored = t.to_lowercase();
    let c = cutoff("6mo", "2026-11-30T12:00:00Z", "UTC");
    let err = store.count_due(&target(&t, json!({"timeColumn": "started_at"})), &c).await.unwrap_err();
    assert_eq!(err.reason(), "MissingTable");
    assert!(err.to_string().contains(&format!("public.{stored}")) && err.to_string().contains("lower case"), "{err}");
    let err = store.count_due(&target(&stored, json!({"timeColumn": "StartedAt"})), &c).await.unwrap_err();
    assert_eq!(err.reason(), "MissingColumn");
    assert!(err.to_string().contains("A column startedat exists"), "{err}");
    assert_eq!(store.count_due(&target(&stored, json!({"timeColumn": "startedat"})), &c).await.unwrap(), 0);
    drop_table(&store, &stored).await;
}

// 11. Keys.

/// Rows a table's scans have read, from PostgreSQL's statistics.
async fn rows_read(store: &SqlStore, table: &str) -> i64 {
    sqlx::query("SELECT pg_stat_force_next_flush()").execute(store.pool()).await.unwrap();
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT CAST(COALESCE(seq_tup_read, 0) + COALESCE(idx_tup_fetch, 0) AS bigint) FROM pg_stat_user_tables WHERE relid = '{table}'::regclass"
    )))
    .fetch_one(store.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn postgres_purges_a_table_without_any_index_reading_each_row_a_few_times() {
    // One connection, so the statistics this test reads are its own.
    let url = support::setting("POSTGRES_URL", "PostgreSQL");
    let settings = delenda::stores::sql::PoolSettings { max_connections: 1, ..Default::default() };
    let store = SqlStore::connect_lazy(&url, settings).unwrap();
    let t = table_name("noindex");
    exec(&store, &format!("CREATE TABLE {t} (ref text, at timestamptz);
        INSERT INTO {t} SELECT 'r' || g, '2020-01-01'::timestamptz + g * interval '1 minute' FROM generate_series(1, 60000) g;
        ANALYZE {t};")).await;
    let before = rows_read(&store, &t).await;
    let c = Cutoff::planned(ts("2020-01-21T20:00:00Z"), ts("2026-01-01T00:00:00Z")).unwrap();
    let mut options = enforce();
    options.max_batch_size = 1000;
    let report =
        store.purge_due(&target(&t, json!({"timeColumn": "at", "keyColumn": "ref"})), &c, &options).await.unwrap();
    assert_eq!(report.account.deleted, 29_999, "{:?}", report.account);
    assert!(report.batches >= 30, "in batches: {}", report.batches);
    // Wait for the other backends' statistics too (they flush when idle).
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let read = rows_read(&store, &t).await - before;
    // Counting (total, due), deleting and reading back each see the table
    // about once: a few times its 60,000 rows, never batches x rows.
    assert!(read < 8 * 60_000, "the purge read {read} rows of a 60,000-row table");
    drop_table(&store, &t).await;
}

#[tokio::test]
async fn mariadb_refuses_a_key_column_without_a_unique_index() {
    let store = store(Engine::MariaDb).await;
    let t = table_name("calls");
    exec(&store, &format!("CREATE TABLE {t} (id BIGINT PRIMARY KEY, ref VARCHAR(20), at TIMESTAMP NULL)")).await;
    let c = cutoff("6mo", "2026-11-30T12:00:00Z", "UTC");
    let err = store
        .purge_due(&target(&t, json!({"timeColumn": "at", "keyColumn": "ref"})), &c, &enforce())
        .await
        .unwrap_err()
        .error;
    assert!(err.to_string().contains("keyColumn ref") && err.to_string().contains("no unique index"), "{err}");
    exec(&store, &format!("CREATE UNIQUE INDEX {t}_ref ON {t} (ref)")).await;
    store.purge_due(&target(&t, json!({"timeColumn": "at", "keyColumn": "ref"})), &c, &enforce()).await.unwrap();
    drop_table(&store, &t).await;
}

/// Tables keyed in every way real schemas are: composite keys, UUIDs as
/// text or bytes, text keys; due rows go and the others stay.
async fn keys(engine: Engine, create: &str, values: &[(&str, bool)]) {
    let store = store(engine).await;
    let t = table_name("keyed");
    exec(&store, &create.replace("{t}", &t)).await;
    for (i, (key, _)) in values.iter().enumerate() {
        let at = if values[i].1 { "2020-01-01 00:00:00" } else { "2026-11-29 00:00:00" };
        let at = if engine == Engine::Sqlite { format!("{at}Z") } else { at.to_owned() };
        exec(&store, &format!("INSERT INTO {t} VALUES ({key}, '{at}', {i})")).await;
    }
    let c = cutoff("6mo", "2026-11-30T12:00:00Z", "UTC");
    let mut options = enforce();
    options.initial_batch_size = 2;
    options.max_batch_size = 2;
    let report = store
        .purge_due(&target(&t, json!({"timeColumn": "at"})), &c, &options)
        .await
        .unwrap_or_else(|e| panic!("{engine:?}: {e}"));
    let due = values.iter().filter(|(_, due)| *due).count() as u64;
    assert_eq!(report.account.deleted, due, "{engine:?} {create}");
    let n = match engine {
        Engine::Postgres => "CAST(n AS bigint)",
        Engine::MariaDb => "CAST(n AS SIGNED)",
        Engine::Sqlite => "n",
    };
    let left: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT {n} FROM {t} ORDER BY n")))
        .fetch_all(store.pool())
        .await
        .unwrap();
    let expected: Vec<i64> = values.iter().enumerate().filter(|(_, (_, due))| !due).map(|(i, _)| i as i64).collect();
    assert_eq!(left, expected, "{engine:?} {create}");
    drop_table(&store, &t).await;
}

#[tokio::test]
async fn composite_uuid_and_text_keys_purge_exactly() {
    let rows = |keys: &[&'static str]| -> Vec<(&'static str, bool)> {
        keys.iter().enumerate().map(|(i, k)| (*k, i % 3 != 1)).collect()
    };
    let composite = ["1, 1", "1, 2", "1, 3", "2, 1", "2, 2", "3, 1", "3, 7"];
    keys(
        Engine::MariaDb,
        "CREATE TABLE {t} (tenant INT, id INT, at TIMESTAMP NULL, n INT, PRIMARY KEY (tenant, id))",
        &rows(&composite),
    )
    .await;
    keys(
        Engine::Postgres,
        "CREATE TABLE {t} (tenant int, id int, at timestamptz, n int, PRIMARY KEY (tenant, id))",
        &rows(&composite),
    )
    .await;
    keys(
        Engine::Sqlite,
        "CREATE TABLE {t} (tenant INT, id INT, at TEXT, n INT, PRIMARY KEY (tenant, id)) WITHOUT ROWID",
        &rows(&composite),
    )
    .await;
    let uuids = [
        "UNHEX('0b7e2c6e9d2a4f6c8a1e3c5d7f9b1a20')",
        "UNHEX('1c8f3d7fae3b507d9b2f4d6e8a0c2b31')",
        "UNHEX('ffffffffffffffffffffffffffffffff')",
        "UNHEX('00000000000000000000000000000000')",
        "UNHEX('7f000000000000000000000000000001')",
    ];
    keys(Engine::MariaDb, "CREATE TABLE {t} (id BINARY(16) PRIMARY KEY, at TIMESTAMP NULL, n INT)", &rows(&uuids))
        .await;
    let pg_uuids = [
        "'0b7e2c6e-9d2a-4f6c-8a1e-3c5d7f9b1a20'",
        "'1c8f3d7f-ae3b-507d-9b2f-4d6e8a0c2b31'",
        "'ffffffff-ffff-ffff-ffff-ffffffffffff'",
        "'00000000-0000-0000-0000-000000000000'",
    ];
    keys(Engine::Postgres, "CREATE TABLE {t} (id uuid PRIMARY KEY, at timestamptz, n int)", &rows(&pg_uuids)).await;
    let texts = ["'a'", "'B'", "'c '", "'中'", "'z\u{1F600}'", "'Zebra'", "'0'"];
    keys(Engine::MariaDb, "CREATE TABLE {t} (id VARCHAR(20) PRIMARY KEY, at TIMESTAMP NULL, n INT) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci", &rows(&texts)).await;
    keys(Engine::Sqlite, "CREATE TABLE {t} (id TEXT PRIMARY KEY, at TEXT, n INT) WITHOUT ROWID", &rows(&texts)).await;
}

/// A unique `keyColumn` may hold NULLs (a legacy reference filled in only
/// for newer rows). MariaDB's key walk sorts them before every key, and no
/// NULL is ever after the last key deleted: due rows without a key go too,
/// the others stay.
#[tokio::test]
async fn mariadb_due_rows_whose_unique_key_is_null_are_purged_too() {
    let store = store(Engine::MariaDb).await;
    let t = table_name("nullkey");
    exec(&store, &format!("CREATE TABLE {t} (ref VARCHAR(20) NULL, at DATETIME NULL, id INT, UNIQUE KEY (ref))")).await;
    let due = "2020-01-01 00:00:00";
    let kept = "2026-11-29 00:00:00";
    let mut rows = Vec::new();
    for id in 1..=15 {
        let reference = if id <= 7 { "NULL".to_owned() } else { format!("'r{id:02}'") };
        let at = if id % 3 == 0 { kept } else { due };
        rows.push(format!("({reference}, '{at}', {id})"));
    }
    exec(&store, &format!("INSERT INTO {t} VALUES {}", rows.join(", "))).await;
    let mut options = enforce();
    options.initial_batch_size = 2;
    options.max_batch_size = 2;
    let target = target(&t, json!({"timeColumn": "at", "keyColumn": "ref", "timeZone": "UTC"}));
    let report = store
        .purge_due(&target, &cutoff("6mo", "2026-11-30T12:00:00Z", "UTC"), &options)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((report.account.deleted, report.account.remaining), (10, Some(0)), "{:?}", report.account);
    assert_eq!(ids(&store, &t).await, vec![3, 6, 9, 12, 15]);
    drop_table(&store, &t).await;
}
