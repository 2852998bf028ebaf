//! Erasure speed and memory of the files store against `grep -vF`, side by
//! side on the same generated JSON-lines file.
//!
//! A file of BENCH_MB megabytes (1024 by default) of JSON lines is written
//! to a temporary directory, one line in a thousand of the subject. The
//! baseline is `grep -vF <address> file > copy`, what a hand-written job
//! would do (without whole-address matching, a read-back, an atomic
//! replace or a kept owner). Delenda then erases the subject from the file
//! with `FileStore::erase_subject`: it reads the file to find the subject,
//! rewrites it, and reads the rewrite back. Reported: throughput of each
//! (megabytes of input per second) and their ratio, and the peak resident
//! memory of the erasure (VmHWM, reset just before it).
//!
//! Run: `cargo bench --bench files` (needs no server; about 3 GB of disk
//! in the temporary directory).

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use delenda::api::Mode;
use delenda::api::policy::Target;
use delenda::stores::files::FileStore;
use delenda::stores::{PurgeOptions, Store, Subject};

const SUBJECT: &str = "jan@example.com";

/// Writes about `bytes` of JSON lines; returns the lines of the subject.
fn generate(path: &std::path::Path, bytes: u64) -> u64 {
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path).expect("create the log"));
    let (mut written, mut subject, mut n) = (0u64, 0u64, 0u64);
    while written < bytes {
        let email = if n % 1000 == 7 { SUBJECT.to_owned() } else { format!("user{n}@example.com") };
        subject += u64::from(n % 1000 == 7);
        let line = format!(
            "{{\"ts\":\"2026-11-28T12:{:02}:{:02}.{:03}Z\",\"level\":\"info\",\"user\":{{\"email\":\"{email}\",\"id\":{n}}},\"ip\":\"10.{}.{}.{}\",\"path\":\"/api/v1/items/{}\",\"status\":200,\"ms\":{}}}\n",
            (n / 60) % 60,
            n % 60,
            n % 1000,
            n % 250,
            (n / 250) % 250,
            n % 199,
            n % 9973,
            n % 97
        );
        out.write_all(line.as_bytes()).expect("write the log");
        written += line.len() as u64;
        n += 1;
    }
    out.flush().expect("flush the log");
    subject
}

fn status(field: &str) -> String {
    let text = fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines().find(|l| l.starts_with(field)).map(|l| l[field.len()..].trim().to_owned()).unwrap_or_default()
}

fn mb_per_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / 1e6 / took.as_secs_f64()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mb: u64 = std::env::var("BENCH_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = dir.path().join("app.jsonl");
    let subject_lines = generate(&log, mb << 20);
    let size = fs::metadata(&log).unwrap().len();
    // Quiet for an hour: not being written, so the store may rewrite it.
    File::options()
        .write(true)
        .open(&log)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    println!("file: {} MB of JSON lines, {subject_lines} of them the subject's", size / 1_000_000);

    let started = Instant::now();
    let grep = Command::new("grep")
        .args(["-vF", SUBJECT])
        .arg(&log)
        .stdout(Stdio::from(File::create(dir.path().join("grep.out")).unwrap()))
        .status()
        .expect("run grep");
    let grep_took = started.elapsed();
    assert!(grep.code() == Some(0), "grep failed: {grep:?}");
    fs::remove_file(dir.path().join("grep.out")).unwrap();

    let target: Target = serde_json::from_value(serde_json::json!({
        "name": "bench", "dataStoreRef": {"name": "logs"},
        "files": {"glob": "*.jsonl", "format": "JsonLines"},
        "subjectFields": [{"identity": "email", "field": "user.email"}]
    }))
    .unwrap();
    let store = FileStore::new(dir.path());
    let subject = Subject::new([("email".parse().unwrap(), SUBJECT.to_owned())]);
    let before = status("VmHWM:");
    // Reset the peak so it measures the erasure alone (Linux 4.0 and later).
    let _ = fs::write("/proc/self/clear_refs", "5");
    let started = Instant::now();
    let report = store.erase_subject(&target, &subject, &PurgeOptions::new(Mode::Enforce)).await.expect("erase");
    let ours_took = started.elapsed();
    assert_eq!(report.account.deleted, subject_lines, "every line of the subject, and no other");

    let (g, o) = (mb_per_s(size, grep_took), mb_per_s(size, ours_took));
    println!("| | MB/s | time |");
    println!("|---|---|---|");
    println!("| baseline: grep -vF | {g:.0} | {:.2} s |", grep_took.as_secs_f64());
    println!("| Delenda: erase_subject (find, rewrite, read back) | {o:.0} | {:.2} s |", ours_took.as_secs_f64());
    println!("| ratio (Delenda / grep) | {:.2} | |", o / g);
    println!("peak resident memory of the erasure (VmHWM): {} (before it: {before})", status("VmHWM:"));
}
