//! Holds against every real store kind: a hold on one subject keeps that
//! subject's due records through a retention run and through an erasure,
//! byte for byte, while everything else that is due goes; the held records
//! are counted as retained under the hold's name; and once the hold ends
//! the next run deletes them. On S3 the store's own legal hold is set on
//! the subject's objects and lifted again.
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use aws_sdk_s3::types::ObjectLockLegalHoldStatus;
use delenda::api::account::RetainReason;
use delenda::api::hold::{Held, HeldBy, HoldSpec};
use delenda::api::policy::Target;
use delenda::api::{ErasureRequestSpec, IdentityName, Mode, RetentionPolicySpec};
use delenda::engine::connect::StoreHandle;
use delenda::engine::erase::{ErasureJob, outcome, run_erasure};
use delenda::engine::run::Stores;
use delenda::plan::erasure::{self as erasure_plan, PolicyView};
use delenda::plan::hold::{HoldView, retain_held};
use delenda::stores::{Cutoff, PurgeOptions, Store, Subject};
use jiff::{Timestamp, ToSpan};
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};
use support::sql::{Engine, exec, snapshot};

const HELD_EMAIL: &str = "jan.jansen@example.nl";
const HOLD: &str = "dispute-2026-11";

fn enforce() -> PurgeOptions {
    PurgeOptions::new(Mode::Enforce)
}

fn pairs(kind: &str, value: &str) -> Vec<(IdentityName, String)> {
    vec![(kind.parse().unwrap(), value.to_owned())]
}

/// The target with a hold on the subject with this identity.
fn held(mut target: Target, kind: &str, value: &str) -> Target {
    target.held = Held(vec![HeldBy { hold: HOLD.into(), identities: Some(pairs(kind, value)) }]);
    target
}

fn hold_spec() -> HoldSpec {
    serde_json::from_value(json!({"identitySecretRef": {"name": "held-subject"}, "reason": "Art18LegalClaims",
        "placedBy": "legal-team"}))
    .unwrap()
}

/// An erasure of `subject` against `store` for a policy whose only target
/// is `target`, with the hold in force: the plan turns the target into
/// retention under the hold, and the engine carries it out.
async fn erase_with_hold(target: &Target, store: Arc<dyn Store>, kind: &str, value: &str) -> (String, String) {
    let spec: RetentionPolicySpec = serde_json::from_value(json!({
        "category": "call-recordings", "description": "d", "responsibleParty": "self", "legalBasis": "Contract",
        "retention": {"period": "1d"}, "schedule": {"cron": "0 3 * * *"}, "targets": [target]
    }))
    .unwrap();
    let request: ErasureRequestSpec = serde_json::from_value(json!({
        "identitySecretRef": {"name": "s"}, "ground": "NoLongerNecessary", "receivedAt": Timestamp::now().to_string(),
        "identityVerification": {"verifiedBy": "privacy-office", "method": "IdentityDocument"}
    }))
    .unwrap();
    let labels = BTreeMap::new();
    let views = [PolicyView { name: "calls", labels: &labels, spec: &spec }];
    let kinds: BTreeSet<IdentityName> = [kind.parse().unwrap()].into();
    let mut plan = erasure_plan::plan(&request, &views, &kinds, Timestamp::now());
    let hold = hold_spec();
    let holds = [HoldView { name: HOLD, spec: &hold, identities: Some(pairs(kind, value)) }];
    retain_held(&mut plan, &holds, |_| Some("call-recordings".to_owned()), &pairs(kind, value));
    let policies = BTreeMap::from([("calls".to_owned(), spec.clone())]);
    let subject = Subject::new(pairs(kind, value));
    let digests = BTreeMap::new();
    let job = ErasureJob {
        request: "ns/r",
        spec: &request,
        plan: &plan,
        policies: &policies,
        subject: &subject,
        subject_digests: &digests,
    };
    let stores: Stores = BTreeMap::from([(target.data_store_ref.name.clone(), StoreHandle::new(store))]);
    let result = run_erasure(&job, &stores, &enforce()).await;
    assert!(result.complete, "{:?}", result.steps);
    let step = &result.steps[0];
    (step.outcome.to_owned(), step.retained.as_ref().map(|(_, u)| u.clone()).unwrap_or_default())
}

// ---------------------------------------------------------------- SQL

fn time_literal(engine: Engine, day: &str) -> String {
    match engine {
        Engine::Postgres => format!("'{day} 00:00:00+00'"),
        Engine::MariaDb => format!("'{day} 00:00:00'"),
        Engine::Sqlite => format!("'{day}T00:00:00Z'"),
    }
}

async fn sql_store(engine: Engine) -> delenda::stores::sql::SqlStore {
    let store = support::sql::store(engine).await;
    store.with_time_zone(Some(jiff::tz::TimeZone::UTC))
}

/// Rows: the held subject's (two due, one spelled in other case, one not
/// due), other people's (due and not), one without an e-mail.
async fn sql_table(store: &delenda::stores::sql::SqlStore, engine: Engine) -> String {
    let table = support::sql::table_name("held_calls");
    let time = match engine {
        Engine::Postgres => "timestamptz",
        Engine::MariaDb => "DATETIME(6)",
        Engine::Sqlite => "TEXT",
    };
    exec(
        store,
        &format!(
            "CREATE TABLE {table} (id bigint PRIMARY KEY, created_at {time}, email varchar(200), note varchar(200)){}",
            engine.table_suffix()
        ),
    )
    .await;
    let rows = [
        (1, "2024-01-02", Some(HELD_EMAIL), "held, due"),
        (2, "2024-02-03", Some("Jan.Jansen@Example.NL"), "held, due, other case"),
        (3, "2026-11-01", Some(HELD_EMAIL), "held, not due"),
        (4, "2024-01-05", Some("piet@example.nl"), "due"),
        (5, "2024-03-05", Some("mary.jan.jansen@example.nl"), "due, longer address"),
        (6, "2024-04-05", None, "due, no e-mail"),
        (7, "2026-11-02", Some("piet@example.nl"), "not due"),
    ];
    for (id, day, email, note) in rows {
        let email = email.map_or("NULL".to_owned(), |e| format!("'{e}'"));
        exec(
            store,
            &format!(
                "INSERT INTO {table} (id, created_at, email, note) VALUES ({id}, {}, {email}, '{note}')",
                time_literal(engine, day)
            ),
        )
        .await;
    }
    table
}

fn sql_target(table: &str) -> Target {
    serde_json::from_value(json!({"name": "calls", "dataStoreRef": {"name": "db"},
        "table": {"name": table, "timeColumn": "created_at"},
        "subjectFields": [{"identity": "email", "field": "email"}]}))
    .unwrap()
}

fn cutoff_2025() -> Cutoff {
    Cutoff::planned("2025-01-01T00:00:00Z".parse().unwrap(), Timestamp::now()).unwrap()
}

async fn a_hold_keeps_a_subjects_rows_through_a_run_and_an_erasure(engine: Engine) {
    let store = sql_store(engine).await;
    let table = sql_table(&store, engine).await;
    let columns = ["created_at", "email", "note"];
    let before = snapshot(&store, engine, &table, &columns).await;
    let target = held(sql_target(&table), "email", HELD_EMAIL);

    let report = store.purge_due(&target, &cutoff_2025(), &enforce()).await.unwrap();
    let after = snapshot(&store, engine, &table, &columns).await;
    let ids: Vec<i64> = after.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, vec![1, 2, 3, 7], "{}: exactly the due rows of others went", engine.server());
    for row in &after {
        assert!(before.contains(row), "{}: row {} is byte for byte as it was", engine.server(), row.0);
    }
    let a = &report.account;
    assert_eq!((a.deleted, a.held_by(HOLD), a.remaining), (3, 2, Some(0)), "{}: {a:?}", engine.server());
    let r = a.retained.iter().find(|r| r.reason == RetainReason::Hold).unwrap();
    assert_eq!(r.hold.as_deref(), Some(HOLD));

    // An erasure of the held subject retains the rows under the hold.
    let (word, under) = erase_with_hold(&target, Arc::new(store.clone()), "email", HELD_EMAIL).await;
    assert_eq!(word, outcome::RETAINED, "{}", engine.server());
    assert!(under.contains(HOLD) && under.contains("18(1)(c)"), "{under}");
    assert_eq!(
        snapshot(&store, engine, &table, &columns).await,
        after,
        "{}: the erasure deleted nothing",
        engine.server()
    );

    // The hold ends: the next run deletes the subject's due rows.
    let released = store.purge_due(&sql_target(&table), &cutoff_2025(), &enforce()).await.unwrap();
    assert_eq!(released.account.deleted, 2, "{}", engine.server());
    assert_eq!(support::sql::ids(&store, &table).await, vec![3, 7], "{}", engine.server());
    support::sql::drop_table(&store, &table).await;
}

#[tokio::test]
async fn a_hold_keeps_a_subjects_postgres_rows_until_it_ends() {
    a_hold_keeps_a_subjects_rows_through_a_run_and_an_erasure(Engine::Postgres).await;
}

#[tokio::test]
async fn a_hold_keeps_a_subjects_mariadb_rows_until_it_ends() {
    a_hold_keeps_a_subjects_rows_through_a_run_and_an_erasure(Engine::MariaDb).await;
}

#[tokio::test]
async fn a_hold_keeps_a_subjects_sqlite_rows_until_it_ends() {
    a_hold_keeps_a_subjects_rows_through_a_run_and_an_erasure(Engine::Sqlite).await;
}

/// With a hold, exactly the due rows that are not held go; the held ones
/// stay byte for byte (PostgreSQL and SQLite, random tables).
#[test]
fn exactly_the_due_and_not_held_rows_go() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut runner = TestRunner::new(Config { cases: 16, failure_persistence: None, ..Config::default() });
    // Per row: days after 2024-06-01 (the cutoff is day 200), and whose e-mail (0 and 1: the held subject).
    let rows = proptest::collection::vec((0i64..400, 0usize..5), 0..25);
    let strategy = (rows, proptest::bool::ANY);
    runner
        .run(&strategy, |(rows, postgres)| {
            rt.block_on(async {
                let engine = if postgres { Engine::Postgres } else { Engine::Sqlite };
                let store = sql_store(engine).await;
                let table = support::sql::table_name("held_prop");
                let time = if postgres { "timestamptz" } else { "TEXT" };
                exec(&store, &format!("CREATE TABLE {table} (id bigint PRIMARY KEY, created_at {time}, email varchar(200), note varchar(200))")).await;
                let emails = [HELD_EMAIL, "JAN.JANSEN@example.nl", "jan@example.nl", "x.jan.jansen@example.nl", "other@example.nl"];
                let start: Timestamp = "2024-06-01T00:00:00Z".parse().unwrap();
                let cutoff_at = start.checked_add((200 * 24).hours()).unwrap();
                let mut expect_left = Vec::new();
                for (i, (day, who)) in rows.iter().enumerate() {
                    let at = start.checked_add((day * 24).hours()).unwrap();
                    let literal = time_literal(engine, &at.strftime("%Y-%m-%d").to_string());
                    exec(&store, &format!("INSERT INTO {table} VALUES ({i}, {literal}, '{}', 'row {i}')", emails[*who])).await;
                    if at >= cutoff_at || *who < 2 {
                        expect_left.push(i as i64);
                    }
                }
                let before = snapshot(&store, engine, &table, &["created_at", "email", "note"]).await;
                let cutoff = Cutoff::planned(cutoff_at, Timestamp::now()).unwrap();
                let report = store.purge_due(&held(sql_target(&table), "email", HELD_EMAIL), &cutoff, &enforce()).await.unwrap();
                let after = snapshot(&store, engine, &table, &["created_at", "email", "note"]).await;
                support::sql::drop_table(&store, &table).await;
                let left: Vec<i64> = after.iter().map(|(id, _)| *id).collect();
                assert_eq!(left, expect_left);
                assert!(after.iter().all(|row| before.contains(row)), "kept rows are unchanged");
                let held_due = rows.iter().filter(|(d, w)| *w < 2 && start.checked_add((d * 24).hours()).unwrap() < cutoff_at).count();
                assert_eq!(report.account.held_by(HOLD), held_due as u64);
            });
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------- S3

async fn legal_hold(store: &delenda::stores::objects::BucketStore, bucket: &str, key: &str) -> bool {
    let out = store.client().get_object_legal_hold().bucket(bucket).key(key).send().await;
    match out {
        Ok(o) => o.legal_hold().and_then(|h| h.status()) == Some(&ObjectLockLegalHoldStatus::On),
        Err(_) => false,
    }
}

#[tokio::test]
async fn a_hold_keeps_a_subjects_objects_with_a_real_legal_hold_until_it_ends() {
    use support::s3::{keys, new_bucket, put, store, target};
    let s3 = store();
    let bucket = new_bucket(&s3, true, true).await;
    let mine = ["recordings/C-1001/2024-01-02.wav", "recordings/C-1001/2024-02-03.wav"];
    let others = ["recordings/C-2002/2024-01-02.wav", "recordings/C-10010/2024-01-02.wav"];
    for k in mine.iter().chain(&others) {
        put(&s3, &bucket, k).await;
    }
    let plain = target(
        &bucket,
        json!({"prefix": "recordings/"}),
        json!([{"identity": "customerId", "keyTemplate": "recordings/{customerId}/"}]),
    );
    let t = held(plain.clone(), "customerId", "C-1001");
    let subject = Subject::new(pairs("customerId", "C-1001"));

    // Placing: the store's own legal hold on the subject's objects only.
    let placed =
        s3.place_legal_holds(&t, &subject).await.unwrap().expect("a bucket with object lock takes legal holds");
    assert_eq!(placed.iter().map(String::as_str).collect::<BTreeSet<_>>(), mine.into_iter().collect());
    for k in mine {
        assert!(legal_hold(&s3, &bucket, k).await, "{k} is under the server's legal hold");
    }
    for k in others {
        assert!(!legal_hold(&s3, &bucket, k).await, "{k} is not");
    }

    // A run: everything is due; the others go, the held stay, counted under the hold.
    let now = Timestamp::now().checked_add(1.hour()).unwrap();
    let cutoff = Cutoff::planned(now, now).unwrap();
    let report = s3.purge_due(&t, &cutoff, &enforce()).await.unwrap();
    assert_eq!(keys(&s3, &bucket).await, mine.iter().map(|k| k.to_string()).collect());
    assert_eq!((report.account.deleted, report.account.held_by(HOLD)), (2, 2), "{:?}", report.account);

    // An erasure of the subject retains them.
    let (word, under) = erase_with_hold(&t, Arc::new(store()), "customerId", "C-1001").await;
    assert_eq!(word, outcome::RETAINED);
    assert!(under.contains(HOLD), "{under}");
    assert_eq!(keys(&s3, &bucket).await.len(), 2);

    // Ending: the legal holds it set are lifted, and the next run deletes.
    let ours: BTreeSet<String> = placed.iter().cloned().collect();
    let lifted = s3.lift_legal_holds(&plain, &move |k: &str| ours.contains(k)).await.unwrap();
    assert_eq!(lifted, 2);
    for k in mine {
        assert!(!legal_hold(&s3, &bucket, k).await, "{k}'s legal hold is lifted");
    }
    let released = s3.purge_due(&plain, &cutoff, &enforce()).await.unwrap();
    assert_eq!(released.account.deleted, 2, "{:?}", released.account);
    assert!(keys(&s3, &bucket).await.is_empty());
}

#[tokio::test]
async fn a_legal_hold_set_by_someone_else_is_neither_claimed_nor_lifted() {
    use support::s3::{new_bucket, put, store, target};
    let s3 = store();
    let bucket = new_bucket(&s3, true, true).await;
    let key = "recordings/C-1001/a.wav";
    put(&s3, &bucket, key).await;
    s3.set_legal_hold(&bucket, key, true).await.unwrap();
    let t = target(
        &bucket,
        json!({"prefix": "recordings/"}),
        json!([{"identity": "customerId", "keyTemplate": "recordings/{customerId}/"}]),
    );
    let placed = s3.place_legal_holds(&t, &Subject::new(pairs("customerId", "C-1001"))).await.unwrap().unwrap();
    assert!(placed.is_empty(), "the hold was already there: not the hold's to lift");
    assert_eq!(s3.lift_legal_holds(&t, &|_: &str| false).await.unwrap(), 0);
    assert!(legal_hold(&s3, &bucket, key).await);
    s3.set_legal_hold(&bucket, key, false).await.unwrap();
}

// ---------------------------------------------------------------- OpenSearch

/// Every document of an index: id and source, after a refresh.
async fn documents(index: &str) -> BTreeMap<String, Value> {
    use reqwest::Method;
    support::search::call(Method::POST, &format!("{index}/_refresh"), None).await;
    let answer = support::search::call(
        Method::POST,
        &format!("{index}/_search"),
        Some(json!({ "size": 1000, "query": { "match_all": {} } })),
    )
    .await;
    answer["hits"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["_id"].as_str().unwrap().to_owned(), h["_source"].clone()))
        .collect()
}

#[tokio::test]
async fn a_hold_keeps_a_subjects_documents_until_it_ends() {
    use support::search::{Cleanup, create_index, index_docs, store};
    let os = store();
    let index = support::unique("dl-held");
    let _cleanup = Cleanup::indices(&[&index]);
    create_index(&index, "date").await;
    let doc =
        |day: &str, email: &str| json!({"@timestamp": format!("{day}T00:00:00Z"), "email": email, "message": "call"});
    index_docs(
        &index,
        &[
            ("h1".into(), doc("2024-01-02", HELD_EMAIL)),
            ("h2".into(), doc("2024-02-02", "Jan.Jansen@example.nl")),
            ("h3".into(), doc("2026-11-01", HELD_EMAIL)),
            ("o1".into(), doc("2024-01-02", "piet@example.nl")),
            ("o2".into(), doc("2024-01-03", "x.jan.jansen@example.nl")),
            ("o3".into(), doc("2026-11-01", "piet@example.nl")),
        ],
    )
    .await;
    let plain: Target = serde_json::from_value(json!({"name": "t", "dataStoreRef": {"name": "os"},
        "logs": {"indexPattern": index, "timeField": "@timestamp"},
        "subjectFields": [{"identity": "email", "field": "email"}]}))
    .unwrap();
    let t = held(plain.clone(), "email", HELD_EMAIL);
    let before = documents(&index).await;
    assert_eq!(os.count_due(&t, &cutoff_2025()).await.unwrap(), 2, "held documents are not due for the guardrails");
    let report = os.purge_due(&t, &cutoff_2025(), &enforce()).await.unwrap();
    let after = documents(&index).await;
    let ids: BTreeSet<&str> = after.keys().map(String::as_str).collect();
    assert_eq!(ids, ["h1", "h2", "h3", "o3"].into_iter().collect());
    assert!(after.iter().all(|(id, doc)| before[id] == *doc), "kept documents are unchanged");
    assert_eq!((report.account.deleted, report.account.held_by(HOLD)), (2, 2), "{:?}", report.account);
    assert!(support::search::exists(&index).await, "an index with held documents is not dropped whole");

    let (word, _) = erase_with_hold(&t, Arc::new(store()), "email", HELD_EMAIL).await;
    assert_eq!(word, outcome::RETAINED);
    assert_eq!(documents(&index).await, after);

    let released = os.purge_due(&plain, &cutoff_2025(), &enforce()).await.unwrap();
    assert_eq!(released.account.deleted, 2);
    let ids: BTreeSet<String> = documents(&index).await.into_keys().collect();
    assert_eq!(ids, ["h3".to_owned(), "o3".to_owned()].into_iter().collect());
}

// ---------------------------------------------------------------- files

fn files_target(files: Value) -> Target {
    serde_json::from_value(json!({"name": "t", "dataStoreRef": {"name": "logs"}, "files": files,
        "subjectFields": [{"identity": "email", "field": "user"}]}))
    .unwrap()
}

#[tokio::test]
async fn a_hold_keeps_a_subjects_log_lines_until_they_end() {
    use delenda::stores::files::FileStore;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calls.jsonl");
    let lines = [
        format!(r#"{{"ts":"2024-01-02T00:00:00Z","user":"{HELD_EMAIL}","msg":"held"}}"#),
        r#"{"ts":"2024-01-02T00:00:01Z","user":"piet@example.nl","msg":"due"}"#.to_owned(),
        r#"{"ts":"2024-01-03T00:00:00Z","user":"JAN.JANSEN@example.nl","msg":"held"}"#.to_owned(),
        r#"{"ts":"2024-01-03T00:00:01Z","user":"x.jan.jansen@example.nl","msg":"due"}"#.to_owned(),
        r#"{"ts":"2026-11-01T00:00:00Z","user":"piet@example.nl","msg":"not due"}"#.to_owned(),
    ];
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options().write(true).open(&path).unwrap().set_modified(old).unwrap();
    let store = FileStore::new(dir.path());
    let plain = files_target(json!({"glob": "*.jsonl", "format": "JsonLines", "age": "LineTime", "timeField": "ts"}));
    let t = held(plain.clone(), "email", HELD_EMAIL);
    let report = store.purge_due(&t, &cutoff_2025(), &enforce()).await.unwrap();
    let kept = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        kept,
        [lines[0].clone(), lines[2].clone(), lines[4].clone()].join("\n") + "\n",
        "every other byte is kept"
    );
    assert_eq!((report.account.deleted, report.account.held_by(HOLD)), (2, 2), "{:?}", report.account);

    let (word, _) = erase_with_hold(&t, Arc::new(FileStore::new(dir.path())), "email", HELD_EMAIL).await;
    assert_eq!(word, outcome::RETAINED);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), kept);

    std::fs::File::options().write(true).open(&path).unwrap().set_modified(old).unwrap();
    let released = store.purge_due(&plain, &cutoff_2025(), &enforce()).await.unwrap();
    assert_eq!(released.account.deleted, 2);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), lines[4].clone() + "\n");
}

#[tokio::test]
async fn a_due_log_file_with_a_held_record_in_it_is_kept_whole() {
    use delenda::stores::files::FileStore;
    let dir = tempfile::tempdir().unwrap();
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_704_067_200);
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::File::options().write(true).open(&p).unwrap().set_modified(old).unwrap();
    };
    write("a.log", &format!("2024-01-01 call from {HELD_EMAIL}\n"));
    write("b.log", "2024-01-01 call from piet@example.nl\n");
    let store = FileStore::new(dir.path());
    let t = held(files_target(json!({"glob": "*.log"})), "email", HELD_EMAIL);
    let mut t = t;
    t.subject_fields = serde_json::from_value(json!([{"identity": "email", "field": "text"}])).unwrap();
    let report = store.purge_due(&t, &cutoff_2025(), &enforce()).await.unwrap();
    assert!(dir.path().join("a.log").exists(), "the file with the held subject's record stays");
    assert!(!dir.path().join("b.log").exists());
    assert_eq!((report.account.deleted, report.account.held_by(HOLD)), (1, 1), "{:?}", report.account);
}

// ---------------------------------------------------------------- fail closed

/// A run of a one-target policy through the engine.
async fn run_once(target: Target, store: Arc<dyn Store>, cutoff: Cutoff) -> delenda::engine::run::RunResult {
    use delenda::engine::run::{Interruption, PolicyRun, run_policy};
    let spec: RetentionPolicySpec = serde_json::from_value(json!({
        "category": "call-recordings", "description": "d", "responsibleParty": "self", "legalBasis": "Contract",
        "retention": {"period": "1d"}, "schedule": {"cron": "0 3 * * *"}, "mode": "Enforce", "targets": [target]
    }))
    .unwrap();
    let mut spec = spec;
    spec.targets[0].held = target.held.clone();
    let stores: Stores = BTreeMap::from([(target.data_store_ref.name.clone(), StoreHandle::new(store))]);
    let run = PolicyRun {
        policy: "ns/calls",
        spec: &spec,
        run_id: "r1",
        cutoff,
        now: Timestamp::now(),
        interruption: Interruption::default(),
    };
    run_policy(run, &stores, |_| enforce()).await
}

#[tokio::test]
async fn a_store_that_cannot_tell_a_subject_apart_is_kept_whole_while_a_hold_on_a_subject_lasts() {
    use delenda::stores::local_buckets::LocalBucketStore;
    let dir = tempfile::tempdir().unwrap();
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_704_067_200);
    for key in ["customers/C-1001/a.opus", "customers/C-2002/b.opus"] {
        let p = dir.path().join("recordings").join(key);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, key).unwrap();
        std::fs::File::options().write(true).open(&p).unwrap().set_modified(old).unwrap();
    }
    let plain: Target = serde_json::from_value(json!({"name": "t", "dataStoreRef": {"name": "recordings"},
        "objects": {"bucket": "recordings", "prefix": "customers/"},
        "subjectFields": [{"identity": "customerId", "keyTemplate": "customers/{customerId}/"}]}))
    .unwrap();
    let result = run_once(
        held(plain.clone(), "customerId", "C-1001"),
        Arc::new(LocalBucketStore::new(dir.path())),
        cutoff_2025(),
    )
    .await;
    let records = &result.targets[0].account;
    assert_eq!((records.deleted, records.held_by(HOLD)), (0, 2), "{records:?}");
    assert!(dir.path().join("recordings/customers/C-2002/b.opus").exists(), "kept whole: nothing was deleted");
    // Released, the next run deletes both.
    let result = run_once(plain, Arc::new(LocalBucketStore::new(dir.path())), cutoff_2025()).await;
    assert_eq!(result.targets[0].account.deleted, 2);
}

#[tokio::test]
async fn a_hold_on_a_whole_target_keeps_everything_there() {
    let store = sql_store(Engine::Postgres).await;
    let table = sql_table(&store, Engine::Postgres).await;
    let mut t = sql_target(&table);
    t.held = Held(vec![HeldBy { hold: "litigation".into(), identities: None }]);
    let result = run_once(t, Arc::new(store.clone()), cutoff_2025()).await;
    let records = &result.targets[0].account;
    assert_eq!((records.deleted, records.held_by("litigation"), records.remaining), (0, 5, Some(0)), "{records:?}");
    assert_eq!(support::sql::ids(&store, &table).await.len(), 7, "nothing went");
    support::sql::drop_table(&store, &table).await;
}
