//! The engine without a cluster: DataStores and RetentionPolicies read from
//! manifests, run once, with the evidence chain written to a file. `delenda
//! demo` uses it with an embedded default: part of the MvS-IT retention
//! table over a SQLite CRM, web-analytics logs and a directory of call
//! recordings that it creates itself.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use jiff::{Timestamp, ToSpan};
use serde::Deserialize;

use crate::api::{DataStore, RetentionPolicy, validate};
use crate::engine::connect;
use crate::engine::evidence::{Expectations, Head, SealedEvidence, seal, verify};
use crate::engine::run::{PolicyRun, Stores, run_policy};
use crate::stores::PurgeOptions;

/// The embedded default manifests of the demo.
pub const DEMO_MANIFESTS: &str = include_str!("../../examples/demo/policies.yaml");
/// The directory the demo's manifests name, replaced by the demo's own.
pub const DEMO_DIR: &str = "/var/lib/delenda/demo";

/// Why a standalone run could not start.
#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    /// A manifest is not a DataStore or RetentionPolicy, or does not parse.
    #[error("manifest {index}: {message}")]
    Manifest { index: usize, message: String },
    /// A policy fails the operator's checks.
    #[error("RetentionPolicy {name}: {message}")]
    Invalid { name: String, message: String },
    /// A DataStore cannot be reached.
    #[error("DataStore {name}: {message}")]
    Store { name: String, message: String },
    /// Setting up the demo's data failed.
    #[error("preparing the demo data: {0}")]
    Setup(String),
}

/// DataStores and RetentionPolicies read from a YAML stream.
pub struct Manifests {
    /// DataStores by name.
    pub stores: BTreeMap<String, DataStore>,
    /// RetentionPolicies in the order given.
    pub policies: Vec<RetentionPolicy>,
}

/// Reads DataStores and RetentionPolicies from multi-document YAML.
pub fn parse(yaml: &str) -> Result<Manifests, StandaloneError> {
    let mut stores = BTreeMap::new();
    let mut policies = Vec::new();
    for (index, doc) in serde_yaml::Deserializer::from_str(yaml).enumerate() {
        let value = serde_yaml::Value::deserialize(doc)
            .map_err(|e| StandaloneError::Manifest { index, message: e.to_string() })?;
        if value.is_null() {
            continue;
        }
        let bad = |e: serde_yaml::Error| StandaloneError::Manifest { index, message: e.to_string() };
        match value.get("kind").and_then(|k| k.as_str()) {
            Some("DataStore") => {
                let ds: DataStore = serde_yaml::from_value(value).map_err(bad)?;
                stores.insert(ds.metadata.name.clone().unwrap_or_default(), ds);
            }
            Some("RetentionPolicy") => policies.push(serde_yaml::from_value(value).map_err(bad)?),
            other => {
                return Err(StandaloneError::Manifest {
                    index,
                    message: format!("kind {other:?} is not run standalone"),
                });
            }
        }
    }
    Ok(Manifests { stores, policies })
}

/// The chain of standalone runs.
pub const CHAIN: &str = "standalone";

/// Runs every policy once at `now`, chaining evidence after `previous`
/// (the chain [`CHAIN`]); returns a report for people and the sealed
/// records.
pub async fn run_once(
    manifests: &Manifests,
    now: Timestamp,
    mut previous: Option<Head>,
) -> Result<(String, Vec<SealedEvidence>), StandaloneError> {
    let mut stores: Stores = BTreeMap::new();
    for (name, ds) in &manifests.stores {
        if ds.spec.postgres.is_some() || ds.spec.mysql.is_some() || ds.spec.s3.is_some() {
            return Err(StandaloneError::Store {
                name: name.clone(),
                message:
                    "standalone runs take sqlite, opensearch, files and localBuckets stores (no Secrets to read credentials from)"
                        .into(),
            });
        }
        let handle = connect::connect(&ds.spec, None)
            .map_err(|e| StandaloneError::Store { name: name.clone(), message: e.to_string() })?;
        handle
            .store
            .probe()
            .await
            .map_err(|e| StandaloneError::Store { name: name.clone(), message: e.to_string() })?;
        stores.insert(name.clone(), handle);
    }
    let mut report = String::new();
    let mut chain = Vec::new();
    let _ = writeln!(
        report,
        "{:<18} {:<12} {:>8} {:>8} {:>9} {:>10}  cutoff",
        "policy", "target", "due", "deleted", "remaining", "unreadable"
    );
    for policy in &manifests.policies {
        let name = policy.metadata.name.clone().unwrap_or_default();
        let schedule = validate::schedule(&policy.spec.schedule)
            .map_err(|e| StandaloneError::Invalid { name: name.clone(), message: e.to_string() })?;
        let cutoff = crate::plan::cutoff(policy.spec.retention.period, now, &schedule.time_zone)
            .map_err(|e| StandaloneError::Invalid { name: name.clone(), message: e.to_string() })?;
        let run_id = format!("{}-{name}", now.as_second());
        let result = run_policy(
            PolicyRun {
                policy: &name,
                spec: &policy.spec,
                run_id: &run_id,
                cutoff: cutoff.clone(),
                now,
                interruption: Default::default(),
            },
            &stores,
            |_| PurgeOptions::new(policy.spec.mode),
        )
        .await;
        for t in &result.targets {
            let a = &t.account;
            let remaining = a.remaining.map_or_else(|| "?".to_owned(), |r| r.to_string());
            let _ = writeln!(
                report,
                "{name:<18} {:<12} {:>8} {:>8} {remaining:>9} {:>10}  {}",
                t.name,
                a.matched,
                a.deleted,
                a.unreadable_total(),
                cutoff.at()
            );
            if let Some(unreadable) = a.unreadable_summary() {
                let _ = writeln!(report, "    kept, could not be judged: {unreadable}");
            }
            if let Some((reason, message)) = &t.error {
                let _ = writeln!(report, "    {reason}: {message}");
            }
        }
        if let Some(stop) = &result.stopped_by {
            let _ = writeln!(report, "    stopped before deleting: {stop}");
        }
        let sealed = seal(CHAIN, previous.as_ref(), result.record, None);
        previous = Some(sealed.head());
        chain.push(sealed);
    }
    Ok((report, chain))
}

/// Fills `dir` with the demo's data: a SQLite CRM, JSON-lines visit logs and
/// support call recordings in the bucket directory `call-recordings/recordings`,
/// some records past their retention period at `now`, some not.
pub async fn prepare_demo(dir: &Path, now: Timestamp) -> Result<(), StandaloneError> {
    use sqlx::Connection;
    let setup = |e: &dyn std::fmt::Display| StandaloneError::Setup(e.to_string());
    std::fs::create_dir_all(dir.join("web-analytics")).map_err(|e| setup(&e))?;
    let db = dir.join("crm.db");
    let _ = std::fs::remove_file(&db);
    let url = format!("sqlite://{}?mode=rwc", db.display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.map_err(|e| setup(&e))?;
    // The CRM writes Amsterdam wall-clock times, as its DataStore declares.
    let amsterdam = jiff::tz::TimeZone::get("Europe/Amsterdam").map_err(|e| setup(&e))?;
    let at =
        |days: i64| (now - (days * 24).hours()).to_zoned(amsterdam.clone()).strftime("%Y-%m-%d %H:%M:%S").to_string();
    let mut sql = String::from(
        "CREATE TABLE contacts (id INTEGER PRIMARY KEY, service_ended_at TEXT, email TEXT, phone TEXT);
         CREATE TABLE support_tickets (id INTEGER PRIMARY KEY, created_at TEXT, requester_email TEXT);
         CREATE TABLE contact_form (id INTEGER PRIMARY KEY, submitted_at TEXT, email TEXT);",
    );
    for i in 1..=40i64 {
        // Every fourth contact's service ended a week ago; the others run on.
        let ended = if i % 4 == 0 { format!("'{}'", at(7)) } else { "NULL".to_owned() };
        let _ =
            write!(sql, "INSERT INTO contacts VALUES ({i}, {ended}, 'contact{i}@example.nl', '+31 6 0000 {i:04}');");
        let _ = write!(sql, "INSERT INTO support_tickets VALUES ({i}, '{}', 'user{i}@example.nl');", at(i * 40));
        let _ = write!(sql, "INSERT INTO contact_form VALUES ({i}, '{}', 'visitor{i}@example.nl');", at(i * 15));
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.map_err(|e| setup(&e))?;
    for months_ago in [1i64, 6, 11, 13, 18, 25] {
        let written = now - (months_ago * 30 * 24).hours();
        let day = written.strftime("%Y-%m-%d").to_string();
        let lines: String =
            (0..5).map(|n| format!("{{\"ip\":\"192.0.2.{n}\",\"path\":\"/tarieven\",\"day\":\"{day}\"}}\n")).collect();
        let path = dir.join("web-analytics").join(format!("visits-{day}.jsonl"));
        std::fs::write(&path, lines).map_err(|e| setup(&e))?;
        // Last written on its day, as a real daily log is: a file modified
        // minutes ago is still being written, and the store leaves it be.
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(std::time::SystemTime::from(written)))
            .map_err(|e| setup(&e))?;
    }
    // Two calls a day on eight days; those more than 90 days ago are due.
    let bucket = dir.join("call-recordings").join("recordings");
    for days_ago in [3i64, 20, 45, 80, 100, 130, 200, 370] {
        let day = (now - (days_ago * 24).hours()).strftime("%Y/%m/%d").to_string();
        let calls = bucket.join("support").join(&day);
        std::fs::create_dir_all(&calls).map_err(|e| setup(&e))?;
        for n in 1..=2 {
            std::fs::write(calls.join(format!("call-{n}.opus")), format!("OggS recording {n} of {day}\n"))
                .map_err(|e| setup(&e))?;
        }
    }
    Ok(())
}

/// Runs the demo in `dir`: prepares the data, runs every embedded policy
/// once, writes the evidence chain to `dir/evidence.jsonl` and verifies it.
pub async fn demo(dir: &Path, now: Timestamp) -> Result<String, StandaloneError> {
    prepare_demo(dir, now).await?;
    let manifests = parse(&DEMO_MANIFESTS.replace(DEMO_DIR, &dir.display().to_string()))?;
    let (mut report, chain) = run_once(&manifests, now, None).await?;
    let lines: String = chain.iter().map(|s| serde_json::to_string(s).expect("evidence serializes") + "\n").collect();
    let evidence = dir.join("evidence.jsonl");
    std::fs::write(&evidence, lines).map_err(|e| StandaloneError::Setup(e.to_string()))?;
    let expect = Expectations { from_start: true, ..Expectations::default() };
    let verified = verify(&chain, &expect).map(|_| "intact (unsigned)").unwrap_or("BROKEN");
    let _ = writeln!(
        report,
        "\nevidence: {} records in {}, chain {verified}; last digest {}\ncheck it with: delenda evidence verify {}",
        chain.len(),
        evidence.display(),
        chain.last().map(|s| s.digest.to_string()).unwrap_or_default(),
        evidence.display()
    );
    Ok(report)
}
