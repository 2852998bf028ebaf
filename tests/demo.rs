//! `delenda demo`, the README's main job: no cluster, embedded defaults.

use std::process::Command;

use sqlx::Connection;

fn delenda(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_delenda")).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_demo_purges_exactly_what_is_due_and_leaves_a_verifiable_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    let (ok, out, err) = delenda(&["demo", "--dir", path]);
    assert!(ok, "{out}\n{err}");
    // 40 tickets, one every 40 days: those older than 3 years (from the 28th on) go.
    let tickets = out.lines().find(|l| l.starts_with("support-tickets")).expect("a line for support-tickets");
    assert_eq!(tickets.split_whitespace().skip(2).take(3).collect::<Vec<_>>(), ["13", "13", "0"], "{out}");
    // 16 support calls, two a day on eight days: the four days more than 90 days ago go.
    let calls = out.lines().find(|l| l.starts_with("support-recordings")).expect("a line for support-recordings");
    assert_eq!(calls.split_whitespace().skip(2).take(3).collect::<Vec<_>>(), ["8", "8", "0"], "{out}");
    assert!(out.contains("chain intact"), "{out}");

    let mut db = sqlx::SqliteConnection::connect(&format!("sqlite://{path}/crm.db")).await.unwrap();
    let count = async |db: &mut sqlx::SqliteConnection, sql: &str| -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(db).await.unwrap()
    };
    assert_eq!(count(&mut db, "SELECT count(*) FROM support_tickets").await, 27);
    assert_eq!(count(&mut db, "SELECT count(*) FROM contact_form").await, 24);
    assert_eq!(count(&mut db, "SELECT count(*) FROM contacts WHERE service_ended_at IS NOT NULL").await, 0);
    assert_eq!(count(&mut db, "SELECT count(*) FROM contacts").await, 30, "contacts whose service runs on stay");
    let logs: Vec<_> = std::fs::read_dir(dir.path().join("web-analytics")).unwrap().collect();
    assert_eq!(logs.len(), 3, "visit logs older than a year are gone, younger ones stay");
    let support = dir.path().join("call-recordings/recordings/support");
    let kept = walk(&support);
    assert_eq!(kept.len(), 8, "recordings of the last 90 days stay: {kept:?}");
    let today = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC).date();
    for file in &kept {
        let day = file.parent().unwrap().strip_prefix(&support).unwrap().display().to_string();
        let date: jiff::civil::Date = day.replace('/', "-").parse().unwrap();
        assert!(date >= today - jiff::ToSpan::days(90), "{day} is more than 90 days ago");
    }

    let evidence = format!("{path}/evidence.jsonl");
    let (ok, out, err) = delenda(&["evidence", "verify", &evidence]);
    assert!(ok && out.starts_with("ok: chain standalone") && out.contains(": 5 records"), "{out}\n{err}");
}

/// Every regular file below `dir`; no directory below it is empty.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(!entries.is_empty(), "the empty directory {} was left behind", dir.display());
    for path in entries {
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files
}

/// The README and `delenda demo --help` say how many rows the demo runs;
/// both must say what examples/demo/policies.yaml holds.
#[test]
fn the_readme_and_the_help_count_the_demos_rows_as_it_runs_them() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let policies = std::fs::read_to_string(root.join("examples/demo/policies.yaml")).unwrap();
    let rows = policies.lines().filter(|l| *l == "kind: RetentionPolicy").count();
    let word = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"][rows];
    let readme =
        std::fs::read_to_string(root.join("README.md")).unwrap().split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(readme.contains(&format!("runs {word} rows")), "README.md must say the demo runs {word} rows");
    let (ok, help, _) = delenda(&["demo", "--help"]);
    assert!(ok);
    assert!(help.contains(&format!("{word} rows")), "delenda demo --help must say {word} rows: {help}");
}
