//! The files store against real files in a temporary directory: whole due
//! files go, nothing outside the root is touched; erasures and per-line
//! purges remove whole records (a line and the lines that continue it) and
//! keep every other byte; files still being written wait; gzip is read and
//! written; owners, modes and times stay; nothing unreadable is guessed at.
mod support;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

use delenda::api::Mode;
use delenda::api::account::{Account, UnreadableReason};
use delenda::api::policy::Target;
use delenda::stores::files::FileStore;
use delenda::stores::{Budget, Cutoff, Incomplete, PurgeOptions, Store, StoreError, Subject};
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
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

/// A modification time well outside the quiet period: nobody writes there.
fn quiet() -> SystemTime {
    SystemTime::now() - Duration::from_secs(3600)
}

fn cutoff(at: SystemTime) -> Cutoff {
    Cutoff::planned(Timestamp::try_from(at).unwrap(), Timestamp::now()).unwrap()
}

fn cutoff_at(at: &str) -> Cutoff {
    Cutoff::planned(at.parse().unwrap(), Timestamp::now()).unwrap()
}

fn set_modified(path: &Path, modified: SystemTime) {
    fs::File::options().write(true).open(path).unwrap().set_modified(modified).unwrap();
}

fn write(path: &Path, bytes: &[u8], modified: SystemTime) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
    set_modified(path, modified);
}

fn email(value: &str) -> Subject {
    Subject::new([("email".parse().unwrap(), value.to_owned())])
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    MultiGzDecoder::new(bytes).read_to_end(&mut out).unwrap();
    out
}

fn unreadable(account: &Account, reason: UnreadableReason) -> u64 {
    account.unreadable.iter().filter(|u| u.reason == reason).map(|u| u.count).sum()
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
            let (mut due, mut in_scope) = (Vec::new(), 0u64);
            for (i, (pick, log, web, hour)) in files.iter().enumerate() {
                let name = format!("{i}-{}.{}", NAMES[pick % NAMES.len()], if *log { "log" } else { "txt" });
                let rel = if *web { format!("web/{name}") } else { format!("other/{name}") };
                let modified = base() + Duration::from_secs(hour * 3600);
                write(&root.join(&rel), rel.as_bytes(), modified);
                in_scope += u64::from(*log && *web);
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
            prop_assert_eq!(rt.block_on(store.count_total(&t)).unwrap(), Some(in_scope));
            let report = rt.block_on(store.purge_due(&t, &c, &enforce())).unwrap();
            let a = &report.account;
            prop_assert_eq!((a.matched, a.deleted, a.remaining), (due.len() as u64, due.len() as u64, Some(0)));
            prop_assert_eq!(a.not_due, Some(in_scope - due.len() as u64));
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
async fn a_date_in_the_name_counts_for_the_whole_day_and_other_names_are_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "access-2024-01-01.log",
        "access-2024-01-02.log",
        "access-2024-13-01.log",
        "access-latest.log",
        "access-2024-01-01.log.gz",
    ] {
        write(&dir.path().join(name), b"x\n", quiet());
    }
    let t = target(
        json!({ "glob": "access-*", "age": "NameDate", "nameDatePattern": "access-{yyyy}-{mm}-{dd}.log" }),
        json!([]),
    );
    let store = FileStore::new(dir.path());
    // 2 January 00:00 ends the first of January, not the second.
    let report = store.purge_due(&t, &cutoff(base() + Duration::from_secs(86_400)), &enforce()).await.unwrap();
    assert_eq!((report.account.deleted, report.account.not_due), (1, Some(1)));
    assert_eq!(unreadable(&report.account, UnreadableReason::KeyDateMismatch), 3, "no date, or no real one");
    assert!(!report.account.proves_nothing_due_remains());
    let left: Vec<String> = snapshot(dir.path()).into_keys().collect();
    assert_eq!(
        left,
        ["access-2024-01-01.log.gz", "access-2024-01-02.log", "access-2024-13-01.log", "access-latest.log"]
    );
}

/// Lines that do or do not hold jan@example.com as a whole address, and
/// whether each continues the record before it.
const LINES: &[(&str, bool)] = &[
    ("2024-01-01 login jan@example.com ok", true),
    ("jan@example.com", true),
    ("(jan@example.com)", true),
    ("2024-01-01 login Jan@Example.COM ok", true),
    ("2024-01-01 login xjan@example.com ok", false),
    ("2024-01-01 login mary.jan@example.com", false),
    ("2024-01-01 login bo+jan@example.com", false),
    ("2024-01-01 login jan@example.community", false),
    ("2024-01-01 login piet@example.com", false),
    ("ünïcödé jörg \u{1F600} line", false),
    ("", false),
    ("   trailing spaces   ", false),
    ("\tat com.example.Login.check(Login.java:42)", false),
    ("Caused by: java.io.IOException: no mailbox jan@example.com", true),
    ("tab\tseparated\tjan@example.com\tfields", true),
    ("crlf line jan@example.com\r", true),
    ("crlf other\r", false),
];

fn continues(line: &str) -> bool {
    line.starts_with(' ') || line.starts_with('\t') || line.starts_with("Caused by:")
}

#[test]
fn text_erasure_removes_whole_records_and_keeps_every_other_byte() {
    let mut runner = TestRunner::new(Config { cases: 32, failure_persistence: None, ..Config::default() });
    let strategy = (proptest::collection::vec(0usize..LINES.len(), 0..30), proptest::bool::ANY);
    runner
        .run(&strategy, |(picks, final_newline)| {
            let dir = tempfile::tempdir().unwrap();
            // Records: a line and the lines that continue it.
            let mut records: Vec<(Vec<u8>, bool)> = Vec::new();
            for (i, pick) in picks.iter().enumerate() {
                let (line, subject) = LINES[*pick];
                let mut bytes = line.as_bytes().to_vec();
                if i + 1 < picks.len() || final_newline {
                    bytes.push(b'\n');
                }
                match records.last_mut() {
                    Some(r) if continues(line) => {
                        r.0.extend_from_slice(&bytes);
                        r.1 |= subject;
                    }
                    _ => records.push((bytes, subject)),
                }
            }
            let original: Vec<u8> = records.iter().flat_map(|r| r.0.clone()).collect();
            let expected: Vec<u8> = records.iter().filter(|r| !r.1).flat_map(|r| r.0.clone()).collect();
            let matched = records.iter().filter(|r| r.1).count() as u64;
            let path = dir.path().join("app.log");
            write(&path, &original, base());
            write(&dir.path().join("other.txt"), &original, base());
            let store = FileStore::new(dir.path());
            let t = target(json!({ "glob": "*.log" }), json!([{ "identity": "email", "field": "email" }]));
            let s = email("jan@example.com");
            let rt = tokio::runtime::Runtime::new().unwrap();
            prop_assert_eq!(rt.block_on(store.count_subject(&t, &s)).unwrap(), matched);
            let report = rt.block_on(store.erase_subject(&t, &s, &enforce())).unwrap();
            let a = &report.account;
            prop_assert_eq!((a.matched, a.deleted, a.remaining), (matched, matched, Some(0)));
            prop_assert_eq!(fs::read(&path).unwrap(), expected);
            prop_assert_eq!(fs::read(dir.path().join("other.txt")).unwrap(), original, "outside the glob");
            prop_assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), base(), "the age of the file is kept");
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
        (r#"{"user":{"email":["x","jan@example.com"]}}"#, true),
        (r#"{ "user" : { "email" : "JAN@example.com" } }"#, true),
        (r#"{"user":{"email":"jan\u0040example.com"}}"#, true),
        (r#"{"user":{"email":"bo+jan@example.com"}}"#, false),
        (r#"not json, and no address"#, false),
    ];
    let original: String = lines.iter().map(|(l, _)| format!("{l}\n")).collect();
    let expected: String = lines.iter().filter(|(_, s)| !s).map(|(l, _)| format!("{l}\n")).collect();
    write(&dir.path().join("events.jsonl"), original.as_bytes(), quiet());
    let store = FileStore::new(dir.path());
    let t = target(
        json!({ "glob": "*.jsonl", "format": "JsonLines" }),
        json!([{ "identity": "email", "field": "user.email" }]),
    );
    let report = store.erase_subject(&t, &email("jan@example.com"), &enforce()).await.unwrap();
    assert_eq!((report.account.matched, report.account.deleted), (5, 5));
    assert_eq!(fs::read_to_string(dir.path().join("events.jsonl")).unwrap(), expected);
}

#[tokio::test]
async fn a_json_line_that_is_not_an_object_but_names_the_subject_is_kept_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let original = "{\"email\":\"jan@example.com\"}\n{\"email\": truncated jan@example.com\n";
    write(&dir.path().join("events.jsonl"), original.as_bytes(), quiet());
    let store = FileStore::new(dir.path());
    let t =
        target(json!({ "glob": "*.jsonl", "format": "JsonLines" }), json!([{ "identity": "email", "field": "email" }]));
    let Incomplete { error, report } =
        store.erase_subject(&t, &email("jan@example.com"), &enforce()).await.unwrap_err();
    assert!(matches!(error, StoreError::UnreadableRecords { records: 1, .. }), "{error}");
    assert!(!error.to_string().contains("jan@"), "{error}");
    assert_eq!((report.account.deleted, unreadable(&report.account, UnreadableReason::UnreadableRecord)), (1, 1));
    assert_eq!(fs::read_to_string(dir.path().join("events.jsonl")).unwrap(), "{\"email\": truncated jan@example.com\n");
}

#[tokio::test]
async fn hostile_identities_and_globs_are_refused_or_match_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let content = "a .. b\n... \n  \nx y z\njörg was here\n../etc/passwd\n";
    write(&dir.path().join("app.log"), content.as_bytes(), quiet());
    let store = FileStore::new(dir.path());
    let t = target(json!({ "glob": "*.log" }), json!([{ "identity": "email", "field": "email" }]));
    for bad in ["", "..", " ", "...", "\n", "a\nb", "jör", "x y zz", "jan@localhost"] {
        let err = store.erase_subject(&t, &email(bad), &enforce()).await.unwrap_err().error;
        assert!(matches!(err, StoreError::InvalidTarget { .. }), "{bad:?}: {err}");
    }
    let id = |v: &str| Subject::new([("customerId".parse().unwrap(), v.to_owned())]);
    let t = target(json!({ "glob": "*.log" }), json!([{ "identity": "customerId", "field": "customer" }]));
    for odd in ["x y zz", "was he", "etc/passwd/", &"j".repeat(10_000)] {
        assert_eq!(store.erase_subject(&t, &id(odd), &enforce()).await.unwrap().account.deleted, 0, "{odd:?}");
    }
    assert_eq!(fs::read_to_string(dir.path().join("app.log")).unwrap(), content);
    // Whole tokens may contain spaces and Unicode.
    assert_eq!(store.erase_subject(&t, &id("jörg was"), &enforce()).await.unwrap().account.deleted, 1);

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

// Issue 10, situation 11: a writer keeps its handle; a rename would send
// everything it writes next into a file no longer there.
#[tokio::test]
async fn lines_written_after_an_erasure_are_kept_because_a_log_being_written_waits_for_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let (log, rotated) = (dir.path().join("app.log"), dir.path().join("app.log.1"));
    let original = "login jan@example.com\nlogin piet@example.com\nlogout jan@example.com\n";
    fs::write(&log, original).unwrap();
    let mut writer = fs::File::options().append(true).open(&log).unwrap();
    let store = FileStore::new(dir.path());
    let t = target(json!({ "glob": "app.log*" }), json!([{ "identity": "email", "field": "email" }]));
    let Incomplete { error, report } =
        store.erase_subject(&t, &email("jan@example.com"), &enforce()).await.unwrap_err();
    assert!(matches!(error, StoreError::FilesInUse { files: 1, records: 2, quiet_seconds: 300 }), "{error}");
    let a = &report.account;
    assert_eq!((a.matched, a.deleted, a.remaining), (2, 0, Some(2)), "the subject's lines wait, counted as remaining");
    writer.write_all(b"written after the erasure\n").unwrap();
    assert_eq!(fs::read_to_string(&log).unwrap(), format!("{original}written after the erasure\n"));

    // Rotation: the writer goes on a moment in the renamed file, then opens a new one.
    fs::rename(&log, &rotated).unwrap();
    writer.write_all(b"late line\n").unwrap();
    drop(writer);
    let mut writer = fs::File::create(&log).unwrap();
    writer.write_all(b"new file\n").unwrap();
    set_modified(&rotated, quiet());
    let report = store.erase_subject(&t, &email("jan@example.com"), &enforce()).await.unwrap();
    assert_eq!((report.account.deleted, report.account.remaining), (2, Some(0)));
    assert_eq!(fs::read_to_string(&rotated).unwrap(), "login piet@example.com\nwritten after the erasure\nlate line\n");
    writer.write_all(b"still written\n").unwrap();
    assert_eq!(fs::read_to_string(&log).unwrap(), "new file\nstill written\n", "the active file was not touched");
}

#[tokio::test]
async fn a_quiet_file_held_open_for_writing_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    write(&log, b"login jan@example.com\n", quiet());
    let mut writer = fs::File::options().append(true).open(&log).unwrap();
    let store = FileStore::new(dir.path());
    let t = target(json!({ "glob": "*.log" }), json!([{ "identity": "email", "field": "email" }]));
    let e = store.erase_subject(&t, &email("jan@example.com"), &enforce()).await.unwrap_err().error;
    assert_eq!(e.reason(), "FilesInUse", "{e}");
    writer.write_all(b"a slow writer's next line\n").unwrap();
    drop(writer);
    set_modified(&log, quiet());
    store.erase_subject(&t, &email("jan@example.com"), &enforce()).await.unwrap();
    assert_eq!(fs::read_to_string(&log).unwrap(), "a slow writer's next line\n");
}

#[tokio::test]
async fn due_records_in_a_file_being_written_wait_and_keep_the_run_from_compliance() {
    let dir = tempfile::tempdir().unwrap();
    let text = "2020-01-01T00:00:00Z old\n2020-01-02T00:00:00Z old\n2999-01-01T00:00:00Z new\n";
    fs::write(dir.path().join("app.log"), text).unwrap();
    fs::write(dir.path().join("access-2020-01-01.log"), "x\n").unwrap();
    let store = FileStore::new(dir.path());
    let c = cutoff_at("2024-01-01T00:00:00Z");
    let t = target(json!({ "glob": "app.log", "age": "LineTime", "lineTimeFormat": "Iso8601" }), json!([]));
    let Incomplete { error, report } = store.purge_due(&t, &c, &enforce()).await.unwrap_err();
    assert!(matches!(error, StoreError::FilesInUse { files: 1, records: 2, .. }), "{error}");
    assert_eq!((report.account.matched, report.account.remaining, report.account.not_due), (2, Some(2), Some(1)));
    assert_eq!(fs::read_to_string(dir.path().join("app.log")).unwrap(), text);
    let named = json!({ "glob": "access-*.log", "age": "NameDate", "nameDatePattern": "access-{yyyy}-{mm}-{dd}.log" });
    let e = store.purge_due(&target(named, json!([])), &c, &enforce()).await.unwrap_err().error;
    assert_eq!(e.reason(), "FilesInUse");
    assert!(dir.path().join("access-2020-01-01.log").exists(), "a due file still being written is not deleted");
}

// Situation 12.
#[tokio::test]
async fn a_rewrite_keeps_owner_group_mode_and_times() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    let t = target(json!({ "glob": "app.log*" }), json!([{ "identity": "email", "field": "email" }]));
    let plain = dir.path().join("app.log");
    let packed = dir.path().join("app.log.1.gz");
    fs::write(&plain, "a jan@example.com\nb\n").unwrap();
    fs::write(&packed, gzip(b"c jan@example.com\nd\n")).unwrap();
    let accessed = base() - Duration::from_secs(86_400);
    for path in [&plain, &packed] {
        std::os::unix::fs::chown(path, Some(4242), Some(4343)).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o640)).unwrap();
        let f = fs::File::options().write(true).open(path).unwrap();
        f.set_times(fs::FileTimes::new().set_accessed(accessed).set_modified(base())).unwrap();
    }
    let report = store.erase_subject(&t, &email("jan@example.com"), &enforce()).await.unwrap();
    assert_eq!(report.account.deleted, 2);
    for path in [&plain, &packed] {
        let m = fs::metadata(path).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (4242, 4343, 0o640), "{}", path.display());
        assert_eq!((m.modified().unwrap(), m.accessed().unwrap()), (base(), accessed), "{}", path.display());
    }
    assert_eq!(fs::read_to_string(&plain).unwrap(), "b\n");
    assert_eq!(gunzip(&fs::read(&packed).unwrap()), b"d\n");
}

// Situation 13.
#[tokio::test]
async fn a_rotated_gzip_log_is_read_and_rewritten_as_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let packed = dir.path().join("app.log.1.gz");
    // Two gzip members, as appending to a .gz makes.
    let mut bytes = gzip(b"login jan@example.com\nlogin piet@example.com\n");
    bytes.extend(gzip(b"\tat trace line\nlogout jan@example.com"));
    write(&packed, &bytes, quiet());
    let store = FileStore::new(dir.path());
    let t = target(json!({ "glob": "app.log*" }), json!([{ "identity": "email", "field": "email" }]));
    assert_eq!(store.count_subject(&t, &email("jan@example.com")).await.unwrap(), 2);
    let report = store.erase_subject(&t, &email("jan@example.com"), &enforce()).await.unwrap();
    assert_eq!((report.account.matched, report.account.deleted, report.account.remaining), (2, 2, Some(0)));
    let rewritten = fs::read(&packed).unwrap();
    assert_eq!(&rewritten[..2], &[0x1f, 0x8b], "still gzip");
    assert_eq!(gunzip(&rewritten), b"login piet@example.com\n\tat trace line\n");
}

#[tokio::test]
async fn a_gzip_file_that_does_not_decompress_is_counted_and_never_touched() {
    let dir = tempfile::tempdir().unwrap();
    let whole = gzip("2020-01-01T00:00:00Z login jan@example.com\n".repeat(200).as_bytes());
    write(&dir.path().join("app.log.2.gz"), &whole[..whole.len() / 2], quiet());
    write(&dir.path().join("app.log.3.gz"), b"not gzip at all: jan@example.com\n", quiet());
    write(&dir.path().join("app.log"), b"2020-01-01T00:00:00Z login jan@example.com\n", quiet());
    let before = snapshot(dir.path());
    let store = FileStore::new(dir.path());
    let fields = json!([{ "identity": "email", "field": "email" }]);
    let t = target(json!({ "glob": "app.log*", "age": "LineTime", "lineTimeFormat": "Iso8601" }), fields);
    let Incomplete { error, report } =
        store.erase_subject(&t, &email("jan@example.com"), &enforce()).await.unwrap_err();
    assert!(matches!(error, StoreError::UnreadableRecords { records: 2, .. }), "{error}");
    assert_eq!((report.account.deleted, unreadable(&report.account, UnreadableReason::UnreadableFile)), (1, 2));
    let after = snapshot(dir.path());
    assert_eq!(after["app.log"], b"");
    assert_eq!((&after["app.log.2.gz"], &after["app.log.3.gz"]), (&before["app.log.2.gz"], &before["app.log.3.gz"]));
    let report = store.purge_due(&t, &cutoff_at("2024-01-01T00:00:00Z"), &enforce()).await.unwrap();
    assert_eq!(unreadable(&report.account, UnreadableReason::UnreadableFile), 2);
    assert!(!report.account.proves_nothing_due_remains(), "never a clean run with files it could not read");
    assert_eq!(snapshot(dir.path()), after, "nothing it could not read was touched");
}

// Situation 14.
#[tokio::test]
async fn an_email_is_erased_as_a_whole_address_in_any_case() {
    let dir = tempfile::tempdir().unwrap();
    let text =
        "1 jan@example.com\n2 mary.jan@example.com\n3 bo+jan@example.com\n4 Jan@Example.com\n5 <JAN@EXAMPLE.COM>.\n";
    write(&dir.path().join("app.log"), text.as_bytes(), quiet());
    let store = FileStore::new(dir.path());
    let t = target(json!({ "glob": "*.log" }), json!([{ "identity": "email", "field": "email" }]));
    let report = store.erase_subject(&t, &email("jan@example.com"), &enforce()).await.unwrap();
    assert_eq!(report.account.deleted, 3);
    assert_eq!(
        fs::read_to_string(dir.path().join("app.log")).unwrap(),
        "2 mary.jan@example.com\n3 bo+jan@example.com\n"
    );
}

#[tokio::test]
async fn a_short_customer_id_is_refused_in_free_text_and_matched_exactly_in_a_field() {
    let dir = tempfile::tempdir().unwrap();
    let text = "order 42 shipped\norder 421 shipped\n";
    write(&dir.path().join("app.log"), text.as_bytes(), quiet());
    let json_lines = "{\"customer\":42}\n{\"customer\":\"42\"}\n{\"customer\":421}\n{\"msg\":\"order 42\"}\n{\"customer\":\"042\"}\n";
    write(&dir.path().join("events.jsonl"), json_lines.as_bytes(), quiet());
    let store = FileStore::new(dir.path());
    let customer = Subject::new([("customerId".parse().unwrap(), "42".to_owned())]);
    let fields = json!([{ "identity": "customerId", "field": "customer" }]);
    let err = store.erase_subject(&target(json!({ "glob": "*.log" }), fields.clone()), &customer, &enforce()).await;
    let err = err.unwrap_err().error;
    assert!(matches!(err, StoreError::InvalidTarget { .. }), "{err}");
    assert!(err.to_string().contains("customerId") && !err.to_string().contains("42"), "{err}");
    assert_eq!(fs::read_to_string(dir.path().join("app.log")).unwrap(), text, "nothing erased");
    let t = target(json!({ "glob": "*.jsonl", "format": "JsonLines" }), fields);
    assert_eq!(store.erase_subject(&t, &customer, &enforce()).await.unwrap().account.deleted, 2);
    assert_eq!(
        fs::read_to_string(dir.path().join("events.jsonl")).unwrap(),
        "{\"customer\":421}\n{\"msg\":\"order 42\"}\n{\"customer\":\"042\"}\n"
    );
}

// Situation 15.
const TRACE: &str = "2024-01-01 10:00:00 INFO start\n\
2024-01-01 10:00:01 ERROR login failed for jan@example.com\n\
java.lang.IllegalStateException: boom\n\
\tat com.example.Login.check(Login.java:42)\n\
\t... 3 more\n\
Caused by: java.io.IOException: timeout\n\
\tat com.example.Mail.send(Mail.java:7)\n\
2024-01-01 10:00:02 INFO next\n";

#[tokio::test]
async fn a_stack_trace_goes_with_the_line_it_continues() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let store = FileStore::new(dir.path());
    let fields = json!([{ "identity": "email", "field": "email" }]);
    // With a declared line time, every line up to the next time belongs to
    // the record, whatever the file's age comes from.
    write(&log, TRACE.as_bytes(), quiet());
    let timed = target(json!({ "glob": "*.log", "lineTimeFormat": "Iso8601" }), fields.clone());
    let report = store.erase_subject(&timed, &email("jan@example.com"), &enforce()).await.unwrap();
    assert_eq!(report.account.deleted, 1, "one record");
    assert_eq!(fs::read_to_string(&log).unwrap(), "2024-01-01 10:00:00 INFO start\n2024-01-01 10:00:02 INFO next\n");
    // Without one, indented lines and "Caused by:" continue a record.
    let indented = "INFO start\nERROR for jan@example.com\n\tat a.B(B.java:1)\nCaused by: x\n\t... 3 more\nINFO next\n";
    write(&log, indented.as_bytes(), quiet());
    store
        .erase_subject(&target(json!({ "glob": "*.log" }), fields), &email("jan@example.com"), &enforce())
        .await
        .unwrap();
    assert_eq!(fs::read_to_string(&log).unwrap(), "INFO start\nINFO next\n");
}

// Situation 16: a log never rotated keeps its mtime fresh; its lines have their own times.
#[tokio::test]
async fn a_never_rotated_log_loses_only_its_due_records() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let text = "  orphan continuation of an earlier file\n\
2023-12-31T23:59:59Z old record\n\
\tat trace.of(Old.java:1)\n\
2024-01-01T00:00:00Z first kept\n\
2023-06-01 12:00:00 civil, zone unknown\n\
2024-02-30T10:00:00Z impossible\n\
[2023-01-01T00:00:00+02:00] old, bracketed\n\
2024-05-01T00:00:00Z kept\n";
    let modified = quiet();
    write(&log, text.as_bytes(), modified);
    let store = FileStore::new(dir.path());
    let t = target(json!({ "glob": "*.log", "age": "LineTime", "lineTimeFormat": "Iso8601" }), json!([]));
    let c = cutoff_at("2024-01-01T00:00:00Z");
    assert_eq!(store.count_due(&t, &c).await.unwrap(), 2);
    assert_eq!(store.count_total(&t).await.unwrap(), Some(7));
    let report = store.purge_due(&t, &c, &enforce()).await.unwrap();
    let a = &report.account;
    assert_eq!((a.matched, a.deleted, a.remaining, a.not_due), (2, 2, Some(0), Some(2)));
    assert_eq!(unreadable(a, UnreadableReason::NotATime), 2, "the orphan head and the impossible date");
    assert_eq!(unreadable(a, UnreadableReason::NoTimeZone), 1);
    assert_eq!(
        fs::read_to_string(&log).unwrap(),
        "  orphan continuation of an earlier file\n\
2024-01-01T00:00:00Z first kept\n\
2023-06-01 12:00:00 civil, zone unknown\n\
2024-02-30T10:00:00Z impossible\n\
2024-05-01T00:00:00Z kept\n"
    );
    assert_eq!(fs::metadata(&log).unwrap().modified().unwrap(), modified, "the file keeps its time");
    // Declaring the zone the application wrote in judges the civil record.
    let zoned = target(
        json!({ "glob": "*.log", "age": "LineTime", "lineTimeFormat": "Iso8601", "timeZone": "Europe/Amsterdam" }),
        json!([]),
    );
    assert_eq!(store.purge_due(&zoned, &c, &enforce()).await.unwrap().account.deleted, 1);
}

#[tokio::test]
async fn json_line_times_are_read_from_the_time_field_in_the_declared_zone() {
    let dir = tempfile::tempdir().unwrap();
    let lines = [
        (r#"{"ts":"2024-05-31T21:59:59Z","n":1}"#, "due"),
        (r#"{"ts":"2024-06-01T00:00:00Z","n":2}"#, "kept"),
        (r#"{"ts":1717192799,"n":3}"#, "due"),              // 2024-05-31T21:59:59Z
        (r#"{"ts":"2024-06-01 01:30:00","n":4}"#, "civil"), // Amsterdam: 2024-05-31T23:30Z
        (r#"{"ts":"yesterday","n":5}"#, "NotATime"),
        (r#"{"n":6}"#, "NotATime"),
        (r#"not json"#, "UnreadableRecord"),
        ("", "blank"),
    ];
    let text: String = lines.iter().map(|(l, _)| format!("{l}\n")).collect();
    let path = dir.path().join("events.jsonl");
    let files = json!({ "glob": "*.jsonl", "format": "JsonLines", "age": "LineTime", "timeField": "ts", "timeFormat": "UnixSeconds" });
    let t = target(files, json!([]));
    let c = cutoff_at("2024-06-01T00:00:00Z");
    write(&path, text.as_bytes(), quiet());
    let report = FileStore::new(dir.path()).purge_due(&t, &c, &enforce()).await.unwrap();
    assert_eq!((report.account.deleted, report.account.not_due), (2, Some(1)));
    let a = &report.account;
    let counts = [UnreadableReason::NoTimeZone, UnreadableReason::NotATime, UnreadableReason::UnreadableRecord]
        .map(|r| unreadable(a, r));
    assert_eq!(counts, [1, 2, 1]);
    // The DataStore's zone: the civil time was written in Amsterdam.
    write(&path, text.as_bytes(), quiet());
    let amsterdam = jiff::tz::TimeZone::get("Europe/Amsterdam").unwrap();
    let report = FileStore::new(dir.path()).with_time_zone(Some(amsterdam)).purge_due(&t, &c, &enforce()).await;
    assert_eq!(report.unwrap().account.deleted, 3);
    let kept: Vec<&str> = lines.iter().filter(|(_, k)| !matches!(*k, "due" | "civil")).map(|(l, _)| *l).collect();
    assert_eq!(fs::read_to_string(&path).unwrap(), kept.iter().map(|l| format!("{l}\n")).collect::<String>());
}

/// One generated record: a time (an hour after base) or an impossible
/// date, and lines that continue it.
fn record_text(i: usize, hour: Option<u64>, continuations: &[u8], json: bool) -> String {
    let when = match hour {
        Some(h) => Timestamp::try_from(base() + Duration::from_secs(h * 3600)).unwrap().to_string(),
        None => "2024-02-30T10:00:00Z".to_owned(),
    };
    if json {
        return format!("{{\"ts\":\"{when}\",\"n\":{i}}}\n");
    }
    let mut text = format!("{when} record {i}\n");
    for c in continuations {
        text.push_str(["\tat x.Y(Y.java:1)\n", "java.lang.X: y\n", "\n", "Caused by: z\n"][*c as usize % 4]);
    }
    text
}

#[test]
fn a_per_line_purge_removes_exactly_the_due_records_and_keeps_every_other_byte() {
    let mut runner = TestRunner::new(Config { cases: 48, failure_persistence: None, ..Config::default() });
    let record = (proptest::option::weighted(0.9, 0u64..72), proptest::collection::vec(0u8..4, 0..3));
    let strategy = (proptest::collection::vec(record, 0..24), 0u64..80, proptest::bool::ANY, proptest::bool::ANY);
    runner
        .run(&strategy, |(records, cutoff_hour, json, cut_last_newline)| {
            let dir = tempfile::tempdir().unwrap();
            let at = base() + Duration::from_secs(cutoff_hour * 3600);
            let mut texts: Vec<(String, Option<bool>)> = records
                .iter()
                .enumerate()
                .map(|(i, (hour, conts))| {
                    let due = hour.map(|h| base() + Duration::from_secs(h * 3600) < at);
                    (record_text(i, *hour, conts, json), due)
                })
                .collect();
            if cut_last_newline && let Some(last) = texts.last_mut() {
                last.0.pop();
            }
            let original: String = texts.iter().map(|(t, _)| t.as_str()).collect();
            let expected: String = texts.iter().filter(|(_, d)| *d != Some(true)).map(|(t, _)| t.as_str()).collect();
            let due = texts.iter().filter(|(_, d)| *d == Some(true)).count() as u64;
            let path = dir.path().join(if json { "app.jsonl" } else { "app.log" });
            write(&path, original.as_bytes(), quiet());
            let files = if json {
                json!({ "glob": "app.*", "format": "JsonLines", "age": "LineTime", "timeField": "ts" })
            } else {
                json!({ "glob": "app.*", "age": "LineTime", "lineTimeFormat": "Iso8601" })
            };
            let rt = tokio::runtime::Runtime::new().unwrap();
            let report =
                rt.block_on(FileStore::new(dir.path()).purge_due(&target(files, json!([])), &cutoff(at), &enforce()));
            let a = report.unwrap().account;
            prop_assert_eq!((a.matched, a.deleted, a.remaining), (due, due, Some(0)));
            prop_assert_eq!(a.not_due, Some(texts.iter().filter(|(_, d)| *d == Some(false)).count() as u64));
            prop_assert_eq!(
                unreadable(&a, UnreadableReason::NotATime),
                texts.iter().filter(|(_, d)| d.is_none()).count() as u64
            );
            if expected.is_empty() && due > 0 {
                prop_assert!(!path.exists(), "a file whose every record was due goes");
            } else {
                prop_assert_eq!(fs::read_to_string(&path).unwrap(), expected);
            }
            Ok(())
        })
        .unwrap();
}

#[tokio::test]
async fn a_budget_stops_a_per_line_purge_between_records() {
    let dir = tempfile::tempdir().unwrap();
    let text: String = (1..=5).map(|d| format!("2020-01-0{d}T00:00:00Z r{d}\n")).collect();
    write(&dir.path().join("app.log"), text.as_bytes(), quiet());
    let t = target(json!({ "glob": "*.log", "age": "LineTime", "lineTimeFormat": "Iso8601" }), json!([]));
    let mut options = enforce();
    options.budget = vec![Budget::new(2, "maxRecordsPerRun")];
    let Incomplete { error, report } =
        FileStore::new(dir.path()).purge_due(&t, &cutoff_at("2024-01-01T00:00:00Z"), &options).await.unwrap_err();
    assert!(matches!(error, StoreError::BudgetSpent { limit: 2, deleted: 2, .. }), "{error}");
    assert_eq!(report.account.deleted, 2);
    assert_eq!(
        fs::read_to_string(dir.path().join("app.log")).unwrap(),
        text.lines().skip(2).map(|l| format!("{l}\n")).collect::<String>()
    );
}

#[tokio::test]
async fn stale_temporary_files_of_an_interrupted_rewrite_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("app.log"), b"login jan@example.com\n", quiet());
    let gone = (4_000_000u32..).find(|p| !Path::new(&format!("/proc/{p}")).exists()).unwrap();
    let dead = format!(".delenda-{gone}-1f.tmp");
    let mine = format!(".delenda-{}-2f.tmp", std::process::id());
    for name in [&dead, &mine, ".delenda-notes"] {
        write(&dir.path().join(name), b"half a copy of jan@example.com\n", SystemTime::now());
    }
    let store = FileStore::new(dir.path());
    let fields = json!([{ "identity": "email", "field": "email" }]);
    let hidden = target(json!({ "glob": ".delenda-*" }), fields.clone());
    assert_eq!(
        store.count_subject(&hidden, &email("jan@example.com")).await.unwrap(),
        1,
        "temporary files are no records"
    );
    let t = target(json!({ "glob": "*.log" }), fields);
    store.erase_subject(&t, &email("jan@example.com"), &PurgeOptions::new(Mode::DryRun)).await.unwrap();
    assert!(dir.path().join(&dead).exists(), "a dry run changes nothing");
    store.erase_subject(&t, &email("jan@example.com"), &enforce()).await.unwrap();
    let left: Vec<String> = snapshot(dir.path()).into_keys().collect();
    assert_eq!(left, [mine, ".delenda-notes".to_owned(), "app.log".to_owned()], "a copy in flight stays");
}

#[tokio::test]
async fn names_that_are_not_utf8_are_counted_and_left_alone() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join(std::ffi::OsStr::from_bytes(b"app-\xff.log"));
    write(&odd, b"login jan@example.com\n", base());
    write(&dir.path().join("other-\u{e9}.txt"), b"x\n", base());
    let store = FileStore::new(dir.path());
    let report = store.purge_due(&target(json!({ "glob": "*.log" }), json!([])), &cutoff(quiet()), &enforce()).await;
    let report = report.unwrap();
    assert_eq!((report.account.deleted, unreadable(&report.account, UnreadableReason::NameNotUtf8)), (0, 1));
    let t = target(json!({ "glob": "*.log" }), json!([{ "identity": "email", "field": "email" }]));
    let e = store.erase_subject(&t, &email("jan@example.com"), &enforce()).await.unwrap_err().error;
    assert_eq!(e.reason(), "UnreadableRecords", "{e}");
    assert_eq!(fs::read(&odd).unwrap(), b"login jan@example.com\n");
}
