//! The files store against real files in a temporary directory: whole due
//! files go, nothing outside the root is touched, and an erasure keeps every
//! other line byte for byte.
mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use delenda::api::Mode;
use delenda::api::policy::Target;
use delenda::stores::files::FileStore;
use delenda::stores::{Cutoff, PurgeOptions, Store, StoreError, Subject};
use jiff::Timestamp;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

fn target(files: Value, subject_fields: Value) -> Target {
    serde_json::from_value(
        json!({ "name": "t", "dataStoreRef": { "name": "logs" }, "files": files, "subjectFields": subject_fields }),
    )
    .unwrap()
}

fn enforce() -> PurgeOptions {
    PurgeOptions::new(Mode::Enforce)
}

fn base() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_067_200) // 2024-01-01
}

fn cutoff(at: SystemTime) -> Cutoff {
    Cutoff::planned(Timestamp::try_from(at).unwrap(), Timestamp::now()).unwrap()
}

fn write(path: &Path, bytes: &[u8], modified: SystemTime) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
    fs::File::options().write(true).open(path).unwrap().set_modified(modified).unwrap();
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut all = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let ty = e.file_type().unwrap();
            if ty.is_dir() {
                stack.push(e.path());
            } else {
                let bytes = if ty.is_symlink() { b"<link>".to_vec() } else { fs::read(e.path()).unwrap() };
                all.insert(e.path().strip_prefix(dir).unwrap().display().to_string(), bytes);
            }
        }
    }
    all
}

const NAMES: &[&str] = &[
    "a b",
    "jörg ünï",
    "x..y",
    "...",
    "%2e%2e",
    "日本語",
    "semi;colon",
    "-dash",
    "long-ŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁ",
];

#[test]
fn purge_removes_exactly_the_files_modified_before_the_cutoff() {
    let mut runner = TestRunner::new(Config { cases: 24, failure_persistence: None, ..Config::default() });
    // (name pick, extension is .log, in web/ or elsewhere, hours after base)
    let file = (0usize..100, proptest::bool::weighted(0.8), proptest::bool::weighted(0.85), 0u64..48);
    let strategy = (proptest::collection::vec(file, 0..16), 0u64..50);
    runner
        .run(&strategy, |(files, cutoff_hour)| {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("root");
            let outside = dir.path().join("outside");
            let at = base() + Duration::from_secs(cutoff_hour * 3600);
            let mut due = Vec::new();
            for (i, (pick, log, web, hour)) in files.iter().enumerate() {
                let name = format!("{i}-{}.{}", NAMES[pick % NAMES.len()], if *log { "log" } else { "txt" });
                let rel = if *web { format!("web/{name}") } else { format!("other/{name}") };
                let modified = base() + Duration::from_secs(hour * 3600);
                write(&root.join(&rel), rel.as_bytes(), modified);
                if *log && *web && modified < at {
                    due.push(rel);
                }
            }
            // Old files the glob must never reach: hidden, outside the root
            // through a link, and a linked directory.
            write(&root.join("web/.hidden.log"), b"hidden", base());
            write(&outside.join("secret.log"), b"secret", base());
            std::os::unix::fs::symlink(outside.join("secret.log"), root.join("web/link.log")).unwrap();
            std::os::unix::fs::symlink(&outside, root.join("web/linkdir")).unwrap();
            let before = (snapshot(&root), snapshot(&outside));
            let store = FileStore::new(&root);
            let t = target(json!({ "glob": "web/*.log" }), json!([]));
            let rt = tokio::runtime::Runtime::new().unwrap();
            let c = cutoff(at);
            prop_assert_eq!(rt.block_on(store.count_due(&t, &c)).unwrap(), due.len() as u64);
            let report = rt.block_on(store.purge_due(&t, &c, &enforce())).unwrap();
            prop_assert_eq!(
                (report.account.matched, report.account.deleted, report.account.remaining.unwrap()),
                (due.len() as u64, due.len() as u64, 0)
            );
            let mut expected = before.0.clone();
            for rel in &due {
                expected.remove(rel);
            }
            prop_assert_eq!(snapshot(&root), expected);
            prop_assert_eq!(snapshot(&outside), before.1);
            Ok(())
        })
        .unwrap();
}

#[tokio::test]
async fn a_date_in_the_name_counts_for_the_whole_day() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    for name in [
        "access-2024-01-01.log",
        "access-2024-01-02.log",
        "access-2024-13-01.log",
        "access-latest.log",
        "access-2024-01-01.log.gz",
    ] {
        write(&dir.path().join(name), b"x\n", now);
    }
    let t = target(
        json!({ "glob": "access-*", "age": "NameDate", "nameDatePattern": "access-{yyyy}-{mm}-{dd}.log" }),
        json!([]),
    );
    let store = FileStore::new(dir.path());
    // 2 January 00:00 ends the first of January, not the second.
    let report = store.purge_due(&t, &cutoff(base() + Duration::from_secs(86_400)), &enforce()).await.unwrap();
    assert_eq!(report.account.deleted, 1);
    let left: Vec<String> = snapshot(dir.path()).into_keys().collect();
    assert_eq!(
        left,
        ["access-2024-01-01.log.gz", "access-2024-01-02.log", "access-2024-13-01.log", "access-latest.log"]
    );
}

/// Lines that do or do not mention jan@example.com as a whole word.
const LINES: &[(&str, bool)] = &[
    ("2024-01-01 login jan@example.com ok", true),
    ("jan@example.com", true),
    ("(jan@example.com)", true),
    ("2024-01-01 login xjan@example.com ok", false),
    ("2024-01-01 login jan@example.community", false),
    ("2024-01-01 login piet@example.com", false),
    ("ünïcödé jörg \u{1F600} line", false),
    ("", false),
    ("   trailing spaces   ", false),
    ("tab\tseparated\tjan@example.com\tfields", true),
    ("crlf line jan@example.com\r", true),
    ("crlf other\r", false),
];

#[test]
fn text_erasure_keeps_every_other_line_byte_for_byte() {
    let mut runner = TestRunner::new(Config { cases: 24, failure_persistence: None, ..Config::default() });
    let strategy = (proptest::collection::vec(0usize..LINES.len(), 0..30), proptest::bool::ANY);
    runner
        .run(&strategy, |(picks, final_newline)| {
            let dir = tempfile::tempdir().unwrap();
            let mut original = Vec::new();
            let mut expected = Vec::new();
            for (i, pick) in picks.iter().enumerate() {
                let (line, subject) = LINES[*pick];
                let last = i + 1 == picks.len();
                let mut bytes = line.as_bytes().to_vec();
                if !last || final_newline {
                    bytes.push(b'\n');
                }
                original.extend_from_slice(&bytes);
                if !subject {
                    expected.extend_from_slice(&bytes);
                }
            }
            let path = dir.path().join("app.log");
            let modified = base();
            write(&path, &original, modified);
            write(&dir.path().join("other.txt"), &original, modified);
            let store = FileStore::new(dir.path());
            let t = target(json!({ "glob": "*.log" }), json!([{ "identity": "email", "field": "email" }]));
            let s = Subject::new([("email".parse().unwrap(), "jan@example.com".to_owned())]);
            let rt = tokio::runtime::Runtime::new().unwrap();
            let matched = picks.iter().filter(|p| LINES[**p].1).count() as u64;
            prop_assert_eq!(rt.block_on(store.count_subject(&t, &s)).unwrap(), matched);
            let report = rt.block_on(store.erase_subject(&t, &s, &enforce())).unwrap();
            prop_assert_eq!(
                (report.account.matched, report.account.deleted, report.account.remaining.unwrap()),
                (matched, matched, 0)
            );
            prop_assert_eq!(fs::read(&path).unwrap(), expected);
            prop_assert_eq!(fs::read(dir.path().join("other.txt")).unwrap(), original, "outside the glob");
            prop_assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), modified, "the age of the file is kept");
            let leftovers: Vec<_> = snapshot(dir.path()).into_keys().filter(|k| k.contains("delenda")).collect();
            prop_assert!(leftovers.is_empty(), "temporary files left: {:?}", leftovers);
            Ok(())
        })
        .unwrap();
}

#[tokio::test]
async fn json_lines_erasure_compares_the_declared_field_only() {
    let dir = tempfile::tempdir().unwrap();
    let lines = [
        (r#"{"user":{"email":"jan@example.com"},"msg":"a"}"#, true),
        (r#"{"user":{"email":"jan@example.com.evil"},"msg":"b"}"#, false),
        (r#"{"user":{"email":"piet@example.com"},"msg":"jan@example.com"}"#, false),
        (r#"{"user.email":"jan@example.com"}"#, true),
        (r#"not json jan@example.com"#, false),
        (r#"{"user":{"email":["x","jan@example.com"]}}"#, true),
        (r#"{ "user" : { "email" : "JAN@example.com" } }"#, false),
    ];
    let original: String = lines.iter().map(|(l, _)| format!("{l}\n")).collect();
    let expected: String = lines.iter().filter(|(_, s)| !s).map(|(l, _)| format!("{l}\n")).collect();
    write(&dir.path().join("events.jsonl"), original.as_bytes(), SystemTime::now());
    let store = FileStore::new(dir.path());
    let t = target(
        json!({ "glob": "*.jsonl", "format": "JsonLines" }),
        json!([{ "identity": "email", "field": "user.email" }]),
    );
    let s = Subject::new([("email".parse().unwrap(), "jan@example.com".to_owned())]);
    let report = store.erase_subject(&t, &s, &enforce()).await.unwrap();
    assert_eq!((report.account.matched, report.account.deleted), (3, 3));
    assert_eq!(fs::read_to_string(dir.path().join("events.jsonl")).unwrap(), expected);
}

#[tokio::test]
async fn hostile_identities_and_globs_are_refused_or_match_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let content = "a .. b\n... \n  \nx y z\njörg was here\n../etc/passwd\n";
    write(&dir.path().join("app.log"), content.as_bytes(), SystemTime::now());
    let store = FileStore::new(dir.path());
    let t = target(json!({ "glob": "*.log" }), json!([{ "identity": "email", "field": "email" }]));
    for bad in ["", "..", " ", "...", "\n", "a\nb"] {
        let s = Subject::new([("email".parse().unwrap(), bad.to_owned())]);
        let err = store.erase_subject(&t, &s, &enforce()).await.unwrap_err().error;
        assert!(matches!(err, StoreError::InvalidTarget { .. }), "{bad:?}: {err}");
    }
    for odd in ["jör", "x y zz", "was he", "etc/passwd/", &"j".repeat(10_000)] {
        let s = Subject::new([("email".parse().unwrap(), odd.to_owned())]);
        assert_eq!(store.erase_subject(&t, &s, &enforce()).await.unwrap().account.deleted, 0, "{odd:?}");
    }
    assert_eq!(fs::read_to_string(dir.path().join("app.log")).unwrap(), content);
    // Whole words may contain spaces and Unicode.
    let s = Subject::new([("email".parse().unwrap(), "jörg".to_owned())]);
    assert_eq!(store.erase_subject(&t, &s, &enforce()).await.unwrap().account.deleted, 1);

    let cut = cutoff(SystemTime::now());
    for glob in ["../*.log", "a/../*.log", "./*.log", "a//b"] {
        let mut t = target(json!({ "glob": "x" }), json!([]));
        t.files.as_mut().unwrap().glob = glob.to_owned();
        let err = store.purge_due(&t, &cut, &enforce()).await.unwrap_err().error;
        assert!(matches!(err, StoreError::InvalidTarget { .. }), "{glob}: {err}");
    }
    let err = FileStore::new(dir.path().join("missing")).probe().await.unwrap_err();
    assert!(matches!(err, StoreError::MissingTable { .. }), "{err}");
}
