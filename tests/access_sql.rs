//! An access request's export from the real SQL servers (PostgreSQL,
//! MariaDB, SQLite): the export holds exactly the rows a direct query finds
//! for the subject and nothing of anyone else; more rows than the limit
//! export nothing; odd types (times without a zone, bytes, exact numerics,
//! NULL) come out faithfully, and a value that cannot be converted is
//! counted as unreadable, not dropped. Rows of a table's declared child
//! tables go with the subject's rows: exactly those an erasure deletes.
mod support;

use delenda::api::Mode;
use delenda::api::policy::Target;
use delenda::stores::sql::SqlStore;
use delenda::stores::{PurgeOptions, Store, StoreError, Subject};
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Row};
use support::sql::{Engine, drop_table, exec};

const SUBJECT: &str = "jan.jansen@example.nl";

fn subject() -> Subject {
    Subject::new([("email".parse().unwrap(), SUBJECT.to_owned())])
}

fn target(table: &str) -> Target {
    serde_json::from_value(json!({"name": "contacts", "dataStoreRef": {"name": "db"},
        "table": {"name": table, "timeColumn": "created_at", "timeZone": "UTC"},
        "subjectFields": [{"identity": "email", "field": "email"}]}))
    .unwrap()
}

fn time_type(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgres => "timestamptz",
        Engine::MariaDb => "DATETIME(6)",
        Engine::Sqlite => "TEXT",
    }
}

/// What the test itself finds for the subject, written apart from the
/// operator's predicate: the rows whose e-mail, trimmed and in lower case,
/// is the subject's.
async fn direct(store: &SqlStore, engine: Engine, table: &str) -> Vec<Value> {
    let email = engine.as_text("email");
    let note = engine.as_text("note");
    let sql = format!("SELECT id, {email}, {note} FROM {table} WHERE LOWER(TRIM({email})) = '{SUBJECT}' ORDER BY id");
    let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(store.pool()).await.unwrap();
    rows.iter()
        .map(|r| {
            json!({"id": r.get::<i64, _>(0), "email": r.get::<Option<String>, _>(1), "note": r.get::<Option<String>, _>(2)})
        })
        .collect()
}

/// The export's records without their time column (compared apart).
fn without_time(records: &[Value]) -> Vec<Value> {
    records
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.as_object_mut().unwrap().remove("created_at");
            r
        })
        .collect()
}

/// Random tables on every engine: the export is what the direct query
/// finds, in key order, and holds no other subject's address.
#[test]
fn the_export_is_exactly_the_subjects_rows() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut runner = TestRunner::new(Config { cases: 12, failure_persistence: None, ..Config::default() });
    // Per row: whose e-mail (0 to 2 are the subject's spellings), and a note or NULL.
    let rows = proptest::collection::vec((0usize..7, proptest::option::of("[a-z ]{0,12}")), 0..30);
    let engines = proptest::sample::select(vec![Engine::Postgres, Engine::MariaDb, Engine::Sqlite]);
    runner
        .run(&(rows, engines), |(rows, engine)| {
            rt.block_on(async {
                let store = support::sql::store(engine).await;
                let table = support::sql::table_name("access_prop");
                exec(
                    &store,
                    &format!(
                        "CREATE TABLE {table} (id bigint PRIMARY KEY, created_at {}, email varchar(200), note varchar(200)){}",
                        time_type(engine),
                        engine.table_suffix()
                    ),
                )
                .await;
                let emails = [
                    SUBJECT,
                    "Jan.Jansen@Example.NL",
                    " jan.jansen@example.nl",
                    "mary.jan.jansen@example.nl",
                    "jan.jansen@example.nl.example.com",
                    "piet@example.nl",
                    "jan@example.nl",
                ];
                // Rows in random key order, so the export's order is not the insert order.
                for (i, (who, note)) in rows.iter().enumerate() {
                    let id = (i as i64 * 7919) % 1009;
                    let note = note.as_ref().map_or("NULL".to_owned(), |n| format!("'{n}'"));
                    exec(
                        &store,
                        &format!(
                            "INSERT INTO {table} VALUES ({id}, '2024-01-02 03:04:05', '{}', {note})",
                            emails[*who]
                        ),
                    )
                    .await;
                }
                let export = store.export_subject(&target(&table), &subject(), 1000).await.unwrap();
                let expected = direct(&store, engine, &table).await;
                drop_table(&store, &table).await;
                assert_eq!(export.unreadable, 0);
                assert_eq!(without_time(&export.records), expected, "{engine:?}");
                let mine = rows.iter().filter(|(who, _)| *who < 3).count();
                assert_eq!(export.records.len(), mine, "{engine:?}: every row of the subject, no other");
                for record in &export.records {
                    let email = record["email"].as_str().unwrap();
                    assert_eq!(email.trim().to_lowercase(), SUBJECT, "{engine:?}: another subject's row exported");
                }
            });
            Ok(())
        })
        .unwrap();
}

async fn more_than_the_limit_exports_nothing(engine: Engine) {
    let store = support::sql::store(engine).await;
    let table = support::sql::table_name("access_limit");
    exec(
        &store,
        &format!(
            "CREATE TABLE {table} (id bigint PRIMARY KEY, created_at {}, email varchar(200), note varchar(200)){}",
            time_type(engine),
            engine.table_suffix()
        ),
    )
    .await;
    for id in 1..=3 {
        exec(&store, &format!("INSERT INTO {table} VALUES ({id}, '2024-01-02 03:04:05', '{SUBJECT}', NULL)")).await;
    }
    exec(&store, &format!("INSERT INTO {table} VALUES (4, '2024-01-02 03:04:05', 'piet@example.nl', NULL)")).await;
    let over = store.export_subject(&target(&table), &subject(), 2).await;
    let exact = store.export_subject(&target(&table), &subject(), 3).await;
    drop_table(&store, &table).await;
    match over {
        Err(e @ StoreError::ExportLimit { limit: 2, .. }) => {
            assert_eq!(e.reason(), "GuardrailReached");
            assert!(e.to_string().contains(&table), "{e}");
        }
        other => panic!("{engine:?}: three rows over a limit of two must be refused, got {other:?}"),
    }
    let exact = exact.unwrap();
    let ids: Vec<i64> = exact.records.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [1, 2, 3], "{engine:?}: a limit the subject's rows fit in exports them all");
}

#[tokio::test]
async fn more_than_the_limit_exports_nothing_on_postgres() {
    more_than_the_limit_exports_nothing(Engine::Postgres).await;
}

#[tokio::test]
async fn more_than_the_limit_exports_nothing_on_mariadb() {
    more_than_the_limit_exports_nothing(Engine::MariaDb).await;
}

#[tokio::test]
async fn more_than_the_limit_exports_nothing_on_sqlite() {
    more_than_the_limit_exports_nothing(Engine::Sqlite).await;
}

/// The subject's one readable row on PostgreSQL, every odd type in it, and
/// a row whose instant is `infinity` counted as unreadable.
#[tokio::test]
async fn odd_types_are_exported_faithfully_from_postgres() {
    let store = support::sql::store(Engine::Postgres).await;
    let table = support::sql::table_name("access_types");
    exec(
        &store,
        &format!(
            "CREATE TABLE {table} (id bigint PRIMARY KEY, created_at timestamptz, email text, \
             civil timestamp(3), day date, raw bytea, amount numeric(30,10), ratio double precision, \
             big bigint, flag boolean, doc jsonb, missing text, ident uuid)"
        ),
    )
    .await;
    exec(
        &store,
        &format!(
            "INSERT INTO {table} VALUES (1, '2024-03-31 01:30:00.25+02', '{SUBJECT}', '2024-03-31 02:30:00.5', \
             '2024-02-29', '\\x00ff10'::bytea, 12345678901234567890.0123456789, 0.1, 9007199254740993, true, \
             '{{\"a\": [1, 2]}}', NULL, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'); \
             INSERT INTO {table} (id, created_at, email) VALUES (2, 'infinity', '{SUBJECT}'); \
             INSERT INTO {table} (id, created_at, email) VALUES (3, '2024-01-01 00:00:00+00', 'piet@example.nl')"
        ),
    )
    .await;
    let export = store.export_subject(&target(&table), &subject(), 10).await.unwrap();
    drop_table(&store, &table).await;
    assert_eq!(export.unreadable, 1, "the row at infinity is counted, not exported");
    assert_eq!(
        export.records,
        [json!({
            "id": 1,
            "created_at": "2024-03-30T23:30:00.25Z",
            "email": SUBJECT,
            "civil": "2024-03-31T02:30:00.5",
            "day": "2024-02-29",
            "raw": "AP8Q",
            "amount": "12345678901234567890.0123456789",
            "ratio": 0.1,
            "big": 9007199254740993i64,
            "flag": true,
            "doc": {"a": [1, 2]},
            "missing": null,
            "ident": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        })]
    );
}

/// The same on MariaDB, with a zero date (which is no time) unreadable.
#[tokio::test]
async fn odd_types_are_exported_faithfully_from_mariadb() {
    let store = support::sql::store(Engine::MariaDb).await;
    let table = support::sql::table_name("access_types");
    exec(
        &store,
        &format!(
            "CREATE TABLE {table} (id bigint PRIMARY KEY, created_at DATETIME(6), email varchar(200), \
             stamp TIMESTAMP(3) NULL, day DATE, raw BLOB, amount DECIMAL(30,10), ratio DOUBLE, \
             big BIGINT UNSIGNED, missing TEXT){}",
            Engine::MariaDb.table_suffix()
        ),
    )
    .await;
    exec(
        &store,
        &format!(
            "SET SESSION sql_mode = ''; SET SESSION time_zone = '+00:00'; \
             INSERT INTO {table} VALUES (1, '2024-03-31 02:30:00.5', '{SUBJECT}', '2024-03-30 23:30:00.25', \
             '2024-02-29', x'00ff10', 12345678901234567890.0123456789, 0.1, 18446744073709551615, NULL); \
             INSERT INTO {table} (id, created_at, email) VALUES (2, '0000-00-00 00:00:00', '{SUBJECT}'); \
             INSERT INTO {table} (id, created_at, email) VALUES (3, '2024-01-01 00:00:00', 'piet@example.nl')"
        ),
    )
    .await;
    let export = store.export_subject(&target(&table), &subject(), 10).await.unwrap();
    drop_table(&store, &table).await;
    assert_eq!(export.unreadable, 1, "the zero date is counted, not exported");
    assert_eq!(
        export.records,
        [json!({
            "id": 1,
            "created_at": "2024-03-31T02:30:00.5",
            "email": SUBJECT,
            "stamp": "2024-03-30T23:30:00.25Z",
            "day": "2024-02-29",
            "raw": "AP8Q",
            "amount": "12345678901234567890.0123456789",
            "ratio": 0.1,
            "big": u64::MAX,
            "missing": null,
        })]
    );
}

/// SQLite keeps each value's own storage class: text stays as written,
/// integers and reals are numbers (every bit of the real), blobs base64.
#[tokio::test]
async fn odd_types_are_exported_faithfully_from_sqlite() {
    let store = support::sql::store(Engine::Sqlite).await;
    let table = support::sql::table_name("access_types");
    exec(
        &store,
        &format!(
            "CREATE TABLE {table} (id INTEGER PRIMARY KEY, created_at DATETIME, email TEXT, raw BLOB, \
             ratio REAL, amount NUMERIC, anything, missing TEXT); \
             INSERT INTO {table} VALUES (1, '2024-03-31 02:30:00', '{SUBJECT}', x'00ff10', 0.30000000000000004, \
             '12.50', 7, NULL); \
             INSERT INTO {table} VALUES (2, 1711848600, '{SUBJECT}', NULL, NULL, NULL, 'text', NULL); \
             INSERT INTO {table} VALUES (3, '2024-01-01', 'piet@example.nl', NULL, NULL, NULL, NULL, NULL)"
        ),
    )
    .await;
    let export = store.export_subject(&target(&table), &subject(), 10).await.unwrap();
    drop_table(&store, &table).await;
    assert_eq!(export.unreadable, 0);
    assert_eq!(
        export.records,
        [
            json!({"id": 1, "created_at": "2024-03-31 02:30:00", "email": SUBJECT, "raw": "AP8Q",
                "ratio": 0.30000000000000004, "amount": 12.5, "anything": 7, "missing": null}),
            json!({"id": 2, "created_at": 1711848600, "email": SUBJECT, "raw": null, "ratio": null,
                "amount": null, "anything": "text", "missing": null}),
        ]
    );
}

/// A target that declares no identity the subject has exports nothing,
/// without an error; an e-mail address that is not one is refused.
#[tokio::test]
async fn no_matching_identity_exports_nothing_and_a_malformed_one_is_refused() {
    let store = support::sql::store(Engine::Sqlite).await;
    let table = support::sql::table_name("access_none");
    exec(
        &store,
        &format!("CREATE TABLE {table} (id INTEGER PRIMARY KEY, created_at TEXT, email TEXT); INSERT INTO {table} VALUES (1, '2024-01-01', '{SUBJECT}')"),
    )
    .await;
    let phone = Subject::new([("phone".parse().unwrap(), "+31 6 12345678".to_owned())]);
    let none = store.export_subject(&target(&table), &phone, 10).await.unwrap();
    let short = Subject::new([("email".parse().unwrap(), "a@b".to_owned())]);
    let refused = store.export_subject(&target(&table), &short, 10).await;
    drop_table(&store, &table).await;
    assert!(none.records.is_empty() && none.unreadable == 0);
    let e = refused.expect_err("a malformed identity must be refused");
    assert!(e.to_string().contains("not an e-mail address"), "{e}");
    assert!(!e.to_string().contains("a@b"), "the identity is not repeated: {e}");
}

/// A target over `parent` with two declared children: `notes` refers to the
/// parent's primary key through a real foreign key; `calls` refers to the
/// parent's `ref` column with no constraint (a legacy schema).
fn target_with_children(parent: &str, notes: &str, calls: &str) -> Target {
    serde_json::from_value(json!({"name": "contacts", "dataStoreRef": {"name": "db"},
        "table": {"name": parent, "timeColumn": "created_at", "timeZone": "UTC",
            "children": [{"name": notes, "foreignKey": "contact_id"},
                         {"name": calls, "foreignKey": "contact_ref", "parentKey": "ref"}]},
        "subjectFields": [{"identity": "email", "field": "email"}]}))
    .unwrap()
}

/// The three tables, on one engine.
async fn family(store: &SqlStore, engine: Engine, prefix: &str) -> (String, String, String) {
    let parent = support::sql::table_name(&format!("{prefix}_p"));
    let notes = support::sql::table_name(&format!("{prefix}_n"));
    let calls = support::sql::table_name(&format!("{prefix}_c"));
    let suffix = engine.table_suffix();
    exec(
        store,
        &format!(
            "CREATE TABLE {parent} (id bigint PRIMARY KEY, ref varchar(40), created_at {}, email varchar(200)){suffix}",
            time_type(engine)
        ),
    )
    .await;
    exec(
        store,
        &format!(
            "CREATE TABLE {notes} (id bigint PRIMARY KEY, contact_id bigint REFERENCES {parent} (id), body varchar(200)){suffix}"
        ),
    )
    .await;
    exec(store, &format!("CREATE TABLE {calls} (id bigint PRIMARY KEY, contact_ref varchar(40), seconds int){suffix}"))
        .await;
    (parent, notes, calls)
}

/// The rows of a table, as the test reads them: each column as text.
async fn snapshot(store: &SqlStore, engine: Engine, table: &str, columns: &[&str]) -> Vec<Vec<Option<String>>> {
    let list: Vec<String> = columns.iter().map(|c| engine.as_text(c)).collect();
    // Qualified: PostgreSQL names `CAST(id AS text)` "id", and would sort by the text.
    let sql = format!("SELECT {} FROM {table} ORDER BY {table}.id", list.join(", "));
    let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(store.pool()).await.unwrap();
    rows.iter().map(|r| (0..columns.len()).map(|i| r.get::<Option<String>, _>(i)).collect()).collect()
}

/// An exported record's values as text, in the order of `columns`.
fn as_text(record: &Value, columns: &[&str]) -> Vec<Option<String>> {
    columns
        .iter()
        .map(|c| match &record[*c] {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        })
        .collect()
}

const NOTE: [&str; 3] = ["id", "contact_id", "body"];
const CALL: [&str; 3] = ["id", "contact_ref", "seconds"];

/// Random parents and children: the export's related rows are exactly the
/// child rows an erasure of the subject then deletes, equal to what the
/// test reads of them, and no other subject's row is among them.
fn children_go_with_their_parents(engine: Engine) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut runner = TestRunner::new(Config { cases: 6, failure_persistence: None, ..Config::default() });
    // Parents: whose e-mail (0 and 1 are the subject's). Children: which
    // parent they name (past the end: none, or NULL), and a value.
    let parents = proptest::collection::vec(0usize..4, 1..12);
    let notes = proptest::collection::vec((0usize..14, proptest::option::of("[a-z ]{0,10}")), 0..24);
    let calls = proptest::collection::vec((0usize..14, 0i32..5000), 0..24);
    runner
        .run(&(parents, notes, calls), |(parents, notes, calls)| {
            rt.block_on(async {
                let store = support::sql::store(engine).await;
                let (parent, notes_t, calls_t) = family(&store, engine, "access_kids").await;
                let emails = [SUBJECT, "JAN.JANSEN@example.nl", "piet@example.nl", "jan@example.nl"];
                for (i, who) in parents.iter().enumerate() {
                    exec(
                        &store,
                        &format!(
                            "INSERT INTO {parent} VALUES ({id}, 'R-{id}', '2024-01-02 03:04:05', '{}')",
                            emails[*who],
                            id = i + 1
                        ),
                    )
                    .await;
                }
                for (i, (to, body)) in notes.iter().enumerate() {
                    let fk = if *to < parents.len() { (to + 1).to_string() } else { "NULL".to_owned() };
                    let body = body.as_ref().map_or("NULL".to_owned(), |b| format!("'{b}'"));
                    // Keys in an order of their own, so the export's order is not the insert order.
                    let id = (i as i64 * 7919) % 1009;
                    exec(&store, &format!("INSERT INTO {notes_t} VALUES ({id}, {fk}, {body})")).await;
                }
                for (i, (to, seconds)) in calls.iter().enumerate() {
                    // Past the parents: a reference to a parent that is not there.
                    let fk = format!("'R-{}'", to + 1);
                    exec(&store, &format!("INSERT INTO {calls_t} VALUES ({}, {fk}, {seconds})", i + 1)).await;
                }
                let t = target_with_children(&parent, &notes_t, &calls_t);
                let export = store.export_subject(&t, &subject(), 1000).await.unwrap();
                let notes_before = snapshot(&store, engine, &notes_t, &NOTE).await;
                let calls_before = snapshot(&store, engine, &calls_t, &CALL).await;
                store.erase_subject(&t, &subject(), &PurgeOptions::new(Mode::Enforce)).await.unwrap();
                let notes_after = snapshot(&store, engine, &notes_t, &NOTE).await;
                let calls_after = snapshot(&store, engine, &calls_t, &CALL).await;
                for table in [&notes_t, &calls_t, &parent] {
                    drop_table(&store, table).await;
                }

                let mine: Vec<usize> = (0..parents.len()).filter(|i| parents[*i] < 2).collect();
                assert_eq!(export.records.len(), mine.len(), "{engine:?}: the subject's own rows");
                assert_eq!(export.unreadable, 0);
                let tables: Vec<&str> = export.related.iter().map(|r| r.table.as_str()).collect();
                assert_eq!(tables, [notes_t.as_str(), calls_t.as_str()], "{engine:?}: one entry per declared child");
                let erased =
                    |before: &[Vec<Option<String>>], after: &[Vec<Option<String>>]| -> Vec<Vec<Option<String>>> {
                        before.iter().filter(|r| !after.contains(r)).cloned().collect()
                    };
                for (related, columns, erased) in [
                    (&export.related[0], &NOTE, erased(&notes_before, &notes_after)),
                    (&export.related[1], &CALL, erased(&calls_before, &calls_after)),
                ] {
                    let exported: Vec<Vec<Option<String>>> =
                        related.records.iter().map(|r| as_text(r, columns)).collect();
                    assert_eq!(exported, erased, "{engine:?} {}: exported = what the erasure deleted", related.table);
                }
                // And by the test's own reckoning, apart from the erasure.
                let subject_ids: Vec<String> = mine.iter().map(|i| (i + 1).to_string()).collect();
                let expected_notes =
                    notes_before.iter().filter(|n| n[1].as_ref().is_some_and(|fk| subject_ids.contains(fk))).count();
                let expected_calls = calls_before
                    .iter()
                    .filter(|c| c[1].as_ref().is_some_and(|fk| subject_ids.iter().any(|id| fk == &format!("R-{id}"))))
                    .count();
                assert_eq!(
                    (export.related[0].records.len(), export.related[1].records.len()),
                    (expected_notes, expected_calls),
                    "{engine:?}"
                );
                assert_eq!(export.record_count() as usize, mine.len() + expected_notes + expected_calls);
            });
            Ok(())
        })
        .unwrap();
}

#[test]
fn children_go_with_their_parents_on_postgres() {
    children_go_with_their_parents(Engine::Postgres);
}

#[test]
fn children_go_with_their_parents_on_mariadb() {
    children_go_with_their_parents(Engine::MariaDb);
}

#[test]
fn children_go_with_their_parents_on_sqlite() {
    children_go_with_their_parents(Engine::Sqlite);
}

/// Child rows count toward the limit: two rows of the subject and three
/// of their children are five records.
async fn children_count_toward_the_limit(engine: Engine) {
    let store = support::sql::store(engine).await;
    let (parent, notes, calls) = family(&store, engine, "access_kidlim").await;
    exec(&store, &format!("INSERT INTO {parent} VALUES (1, 'R-1', '2024-01-02 03:04:05', '{SUBJECT}')")).await;
    exec(&store, &format!("INSERT INTO {parent} VALUES (2, 'R-2', '2024-01-02 03:04:05', '{SUBJECT}')")).await;
    exec(&store, &format!("INSERT INTO {parent} VALUES (3, 'R-3', '2024-01-02 03:04:05', 'piet@example.nl')")).await;
    exec(&store, &format!("INSERT INTO {notes} VALUES (1, 1, 'a')")).await;
    exec(&store, &format!("INSERT INTO {notes} VALUES (2, 3, 'not the subject''s')")).await;
    exec(&store, &format!("INSERT INTO {calls} VALUES (1, 'R-2', 60)")).await;
    exec(&store, &format!("INSERT INTO {calls} VALUES (2, 'R-1', 61)")).await;
    let t = target_with_children(&parent, &notes, &calls);
    let over = store.export_subject(&t, &subject(), 4).await;
    let exact = store.export_subject(&t, &subject(), 5).await;
    for table in [&notes, &calls, &parent] {
        drop_table(&store, table).await;
    }
    match over {
        Err(e @ StoreError::ExportLimit { limit: 4, .. }) => assert_eq!(e.reason(), "GuardrailReached"),
        other => panic!("{engine:?}: five records over a limit of four must be refused, got {other:?}"),
    }
    let exact = exact.unwrap();
    assert_eq!(exact.record_count(), 5, "{engine:?}: {exact:?}");
    let call_ids: Vec<i64> = exact.related[1].records.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(call_ids, [1, 2], "{engine:?}: a child's rows in its key order");
}

#[tokio::test]
async fn children_count_toward_the_limit_on_postgres() {
    children_count_toward_the_limit(Engine::Postgres).await;
}

#[tokio::test]
async fn children_count_toward_the_limit_on_mariadb() {
    children_count_toward_the_limit(Engine::MariaDb).await;
}

#[tokio::test]
async fn children_count_toward_the_limit_on_sqlite() {
    children_count_toward_the_limit(Engine::Sqlite).await;
}
