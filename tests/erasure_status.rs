//! What an ErasureRequest's and a RetentionPolicy's status say, read as a
//! privacy officer reads them (`kubectl get`, `describe`), against the real
//! kube-apiserver and the real PostgreSQL: dry runs are previews, nothing in
//! scope is a failure that keeps the Secret, targets not searched or skipped
//! are listed and counted, outcomes add up over passes and survive a kill,
//! a changed policy is no longer proven compliant, and the columns show
//! what the officer needs.
mod support;

use support::eventually;

use std::time::Duration;

use delenda::api::erasure::ErasurePhase;
use delenda::api::{ErasureRequest, ErasureRequestStatus, RetentionPolicy};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams};

use support::cluster::{EMAIL, Fixture, table_sql};

fn target<'a>(status: &'a ErasureRequestStatus, name: &str) -> &'a delenda::api::erasure::ErasureTargetOutcome {
    status.targets.iter().find(|t| t.target == name).unwrap_or_else(|| panic!("{name} in {:?}", status.targets))
}

/// Situation 1: a DryRun request is a preview, not a completion.
#[tokio::test]
async fn a_dry_run_is_previewed_with_what_it_would_erase_and_erases_nothing() {
    let mut f = Fixture::new("dry-run", None).await;
    let table = support::unique("tickets").replace('-', "_");
    f.sql(&table_sql(&table, 3, 4)).await;
    f.policy("support-tickets", "self", &[("tickets", &table, "email")]).await;
    f.identity_secret("subject", serde_json::json!({"email": EMAIL})).await;
    f.request("preview", "subject", serde_json::json!({"mode": "DryRun"})).await;
    let operator = f.operator(true, Duration::from_secs(60));

    let status = f
        .status_when("preview", "the dry run to finish", 60, |s| {
            s.phase.is_some_and(|p| p != ErasurePhase::InProgress && p != ErasurePhase::Pending)
        })
        .await;
    assert_eq!(status.phase, Some(ErasurePhase::Previewed), "{status:?}");
    let t = target(&status, "tickets");
    assert_eq!((t.outcome.as_str(), t.matched, t.erased), ("WouldErase", 3, 0));
    let summary = status.summary.clone().unwrap();
    assert_eq!((summary.would_erase, summary.erased), (3, 0));
    assert!(status.completed_at.is_none(), "a preview completes nothing");
    assert_eq!(f.count(&table).await, 3, "a dry run erases nothing");
    let secrets: Api<Secret> = f.api();
    assert!(secrets.get_opt("subject").await.unwrap().is_some(), "a preview keeps the identity Secret");
    let events = f.event_reasons().await;
    assert!(
        events.iter().any(|(r, _, m)| r == "ErasurePreviewed" && m.contains("3 records would be erased")),
        "{events:?}"
    );
    let records = f.erasure_records().await;
    assert_eq!(records.last().unwrap()["phase"], "Previewed");
    operator.stop().await;
}

/// Situation 2: a request whose identities match no target in scope fails
/// with NoTargetsInScope and keeps its Secret.
#[tokio::test]
async fn nothing_in_scope_fails_with_the_reason_and_keeps_the_secret() {
    let mut f = Fixture::new("no-scope", None).await;
    let table = support::unique("tickets").replace('-', "_");
    f.sql(&table_sql(&table, 1, 1)).await;
    f.policy("support-tickets", "self", &[("tickets", &table, "email")]).await;
    f.identity_secret("subject", serde_json::json!({"username": "anna", "password": "secret"})).await;
    f.request("misfiled", "subject", serde_json::json!({})).await;
    let operator = f.operator(true, Duration::from_secs(60));

    let status = f.status_when("misfiled", "the request to fail", 60, |s| s.phase == Some(ErasurePhase::Failed)).await;
    let valid = status.conditions.iter().find(|c| c.type_ == "Valid").unwrap();
    assert_eq!((valid.status.as_str(), valid.reason.as_str()), ("False", "NoTargetsInScope"), "{valid:?}");
    assert!(valid.message.contains("The targets in scope hold: email"), "{}", valid.message);
    assert!(valid.message.contains("username") && valid.message.contains("password"), "{}", valid.message);
    assert!(!valid.message.contains("secret") || !valid.message.contains("anna"), "no values in the message");
    assert!(status.completed_at.is_none());
    let t = target(&status, "tickets");
    assert_eq!(t.outcome, "NotSearched");
    // Keeps the Secret, and keeps it across a while of waiting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let secrets: Api<Secret> = f.api();
    assert!(secrets.get_opt("subject").await.unwrap().is_some(), "the Secret is kept");
    assert_eq!(f.count(&table).await, 1);
    let events = f.event_reasons().await;
    assert!(events.iter().any(|(r, t, _)| r == "NoTargetsInScope" && t == "Warning"), "{events:?}");
    operator.stop().await;
}

/// Situations 3 and 4: targets in scope that hold no identity the request
/// gave are listed NotSearched; processor targets without onBehalfOf are
/// Skipped, counted in the summary, the Event and the column.
#[tokio::test]
async fn targets_not_searched_and_skipped_are_listed_and_counted() {
    let mut f = Fixture::new("listed", None).await;
    let (mail, calls, hosted) = (
        support::unique("mail").replace('-', "_"),
        support::unique("calls").replace('-', "_"),
        support::unique("hosted").replace('-', "_"),
    );
    for t in [&mail, &calls, &hosted] {
        f.sql(&table_sql(t, 2, 2)).await;
    }
    f.policy("contacts", "self", &[("mail", &mail, "email"), ("calls", &calls, "phone")]).await;
    f.policy("hosted-crm", "customer", &[("hosted", &hosted, "email")]).await;
    f.identity_secret("subject", serde_json::json!({"email": EMAIL})).await;
    f.request("partial", "subject", serde_json::json!({})).await;
    let operator = f.operator(true, Duration::from_secs(60));

    let status =
        f.status_when("partial", "the request to complete", 60, |s| s.phase == Some(ErasurePhase::Completed)).await;
    assert_eq!(target(&status, "mail").outcome, "Erased");
    assert_eq!(target(&status, "mail").erased, 2);
    let calls_outcome = target(&status, "calls");
    assert_eq!(calls_outcome.outcome, "NotSearched");
    assert!(calls_outcome.message.as_deref().unwrap().contains("(phone)"), "{calls_outcome:?}");
    let hosted_outcome = target(&status, "hosted");
    assert_eq!(hosted_outcome.outcome, "Skipped");
    assert!(hosted_outcome.message.as_deref().unwrap().contains("onBehalfOf"), "{hosted_outcome:?}");
    let summary = status.summary.clone().unwrap();
    assert_eq!((summary.erased, summary.skipped, summary.not_searched, summary.failed), (2, 1, 1, 0));
    assert_eq!(f.count(&hosted).await, 2, "the processor's data is untouched");
    let events = f.event_reasons().await;
    assert!(
        events.iter().any(|(r, t, m)| r == "ErasureCompleted"
            && t == "Warning"
            && m.contains("1 targets skipped")
            && m.contains("1 not searched")),
        "a completion that skipped a target warns: {events:?}"
    );
    let record = f.erasure_records().await.pop().unwrap();
    let outcomes: Vec<&str> =
        record["targets"].as_array().unwrap().iter().map(|t| t["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes.iter().filter(|o| **o == "Skipped").count(), 1, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| **o == "NotSearched").count(), 1, "{outcomes:?}");
    operator.stop().await;
}

/// Situation 5, first half: a target erased in a failed pass stays Erased
/// with its count when the retry finds nothing left, and the retry adds
/// what it erased; a failing request records evidence once, not per pass.
#[tokio::test]
async fn outcomes_add_up_over_passes_and_a_retry_records_no_extra_evidence() {
    let mut f = Fixture::new("passes", None).await;
    let (tickets, notes) = (support::unique("tickets").replace('-', "_"), support::unique("notes").replace('-', "_"));
    f.sql(&table_sql(&tickets, 2, 3)).await;
    // `notes` does not exist yet: its target fails until it does.
    f.policy("support", "self", &[("tickets", &tickets, "email"), ("notes", &notes, "email")]).await;
    f.identity_secret("subject", serde_json::json!({"email": EMAIL})).await;
    f.request("retried", "subject", serde_json::json!({})).await;
    let operator = f.operator(true, Duration::from_secs(3));

    let first = f
        .status_when("retried", "the first pass to fail", 60, |s| {
            s.phase == Some(ErasurePhase::Failed) && s.failed_passes >= 1
        })
        .await;
    assert_eq!((target(&first, "tickets").outcome.as_str(), target(&first, "tickets").erased), ("Erased", 2));
    assert_eq!(target(&first, "notes").outcome, "Failed");
    assert!(target(&first, "notes").message.as_deref().unwrap().contains(&notes), "{first:?}");
    // A second failed pass adds no evidence record.
    f.status_when("retried", "a second failed pass", 60, |s| s.failed_passes >= 2).await;
    assert_eq!(f.erasure_records().await.len(), 1, "one record for the first failure, none per retry");

    f.sql(&table_sql(&notes, 1, 1)).await;
    let done =
        f.status_when("retried", "the retry to complete", 60, |s| s.phase == Some(ErasurePhase::Completed)).await;
    let t = target(&done, "tickets");
    assert_eq!((t.outcome.as_str(), t.matched, t.erased), ("Erased", 2, 2), "the first pass's erasure stands");
    let n = target(&done, "notes");
    assert_eq!((n.outcome.as_str(), n.erased, n.remaining), ("Erased", 1, Some(0)));
    assert_eq!(done.summary.clone().unwrap().erased, 3);
    assert_eq!(done.failed_passes, 0);
    assert!(done.completed_at.is_some());
    let records = f.erasure_records().await;
    assert_eq!(records.len(), 2, "the first failure and the completion");
    assert_eq!(records[1]["phase"], "Completed");
    let erased = |name: &str| {
        records[1]["targets"].as_array().unwrap().iter().find(|t| t["target"] == name).unwrap()["erased"].clone()
    };
    assert_eq!((erased("tickets"), erased("notes")), (2.into(), 1.into()));
    for key in ["startedAt", "finishedAt"] {
        assert!(records[1][key].as_str().unwrap().parse::<jiff::Timestamp>().is_ok(), "{key}");
    }
    operator.stop().await;
}

/// Situation 5, second half: a process killed mid-target leaves a record of
/// what it erased; the next process adds the rest, nothing lost, nothing
/// counted twice.
#[tokio::test]
async fn a_kill_mid_target_loses_nothing_and_counts_nothing_twice() {
    let mut f = Fixture::new("killed", Some(serde_json::json!({"maxDeletesPerSecond": 40}))).await;
    let table = support::unique("events").replace('-', "_");
    f.sql(&table_sql(&table, 200, 50)).await;
    f.policy("events", "self", &[("events", &table, "email")]).await;
    f.identity_secret("subject", serde_json::json!({"email": EMAIL})).await;
    f.request("killed", "subject", serde_json::json!({})).await;

    let first = f.operator(true, Duration::from_secs(60));
    let progress = f
        .status_when("killed", "progress to be saved mid-target", 60, |s| {
            s.targets.iter().any(|t| t.outcome == "InProgress" && t.erased > 0)
        })
        .await;
    // Killed, not stopped: the task is dropped mid-target.
    first.handle.abort();
    let _ = first.handle.await;
    let saved = target(&progress, "events").erased;
    let left = f.count(&table).await;
    assert!(left > 0, "the kill came before the target was done");
    let requests: Api<ErasureRequest> = f.api();
    let after_kill = requests.get("killed").await.unwrap().status.unwrap();
    let recorded = target(&after_kill, "events").erased;
    assert!(recorded >= saved, "what was saved stays");
    assert_eq!(recorded + left, 200, "what the status records and what is left add up");

    let second = f.operator(true, Duration::from_secs(60));
    let done =
        f.status_when("killed", "the next process to complete", 60, |s| s.phase == Some(ErasurePhase::Completed)).await;
    let t = target(&done, "events");
    assert_eq!((t.outcome.as_str(), t.matched, t.erased, t.remaining), ("Erased", 200, 200, Some(0)));
    assert_eq!(f.count(&table).await, 0);
    let others: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(&mut f.pg)
        .await
        .unwrap();
    assert_eq!(others, 50, "nobody else's records went");
    second.stop().await;
}

/// Situation 6: Compliant turns Unknown when the spec changes after the run
/// that proved it.
#[tokio::test]
async fn a_changed_policy_is_no_longer_proven_compliant() {
    let mut f = Fixture::new("spec-changed", None).await;
    let table = support::unique("contacts").replace('-', "_");
    f.sql(&table_sql(&table, 0, 3)).await;
    f.policy("contacts", "self", &[("contacts", &table, "email")]).await;
    let policies: Api<RetentionPolicy> = f.api();
    let run_now = serde_json::json!({"metadata": {"annotations": {"delenda.dev/run-now": "t1"}}});
    policies.patch("contacts", &PatchParams::default(), &Patch::Merge(&run_now)).await.unwrap();
    let operator = f.operator(true, Duration::from_secs(60));
    let compliant = async |want: &str| {
        eventually(&format!("Compliant {want}"), 60, async || {
            let status = policies.get("contacts").await.ok()?.status?;
            let c = status.conditions.iter().find(|c| c.type_ == "Compliant")?.clone();
            (c.status == want).then_some(c)
        })
        .await
    };
    compliant("True").await;

    let shorter = serde_json::json!({"spec": {"retention": {"period": "1y"}}});
    policies.patch("contacts", &PatchParams::default(), &Patch::Merge(&shorter)).await.unwrap();
    let c = compliant("Unknown").await;
    assert_eq!(c.reason, "SpecChanged");
    assert!(c.message.contains("generation 2"), "{}", c.message);
    let status = policies.get("contacts").await.unwrap().status.unwrap();
    assert_eq!(status.history.len(), 1, "the edit alone runs nothing");
    operator.stop().await;
}

/// Situation 7: the columns a privacy officer reads in `kubectl get`, as
/// the API server renders them, and Overdue kept when the operator has no
/// installation key.
#[tokio::test]
async fn kubectl_get_shows_mode_overdue_completed_and_skipped_and_overdue_survives_a_missing_key() {
    let mut f = Fixture::new("columns", None).await;
    let table = support::unique("tickets").replace('-', "_");
    f.sql(&table_sql(&table, 1, 1)).await;
    f.policy("support", "self", &[("tickets", &table, "email")]).await;
    f.identity_secret("subject", serde_json::json!({"email": EMAIL})).await;
    f.identity_secret("late-subject", serde_json::json!({"email": EMAIL})).await;
    let long_ago = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * 40)).to_string();
    f.request("late", "late-subject", serde_json::json!({"receivedAt": long_ago})).await;

    // Without the installation key, the late request waits, and says it is overdue.
    let keyless = f.operator(false, Duration::from_secs(60));
    let waiting =
        f.status_when("late", "the keyless operator to mark the request", 60, |s| !s.conditions.is_empty()).await;
    assert_eq!(waiting.phase, Some(ErasurePhase::Pending));
    let overdue = waiting.conditions.iter().find(|c| c.type_ == "Overdue").expect("Overdue without a key");
    assert_eq!((overdue.status.as_str(), overdue.reason.as_str()), ("True", "DeadlinePassed"));
    keyless.stop().await;

    f.request("on-time", "subject", serde_json::json!({})).await;
    let operator = f.operator(true, Duration::from_secs(60));
    f.status_when("on-time", "the request to complete", 60, |s| s.phase == Some(ErasurePhase::Completed)).await;
    let late =
        f.status_when("late", "the late request to complete", 60, |s| s.phase == Some(ErasurePhase::Completed)).await;
    let overdue = late.conditions.iter().find(|c| c.type_ == "Overdue").unwrap();
    assert_eq!(
        (overdue.status.as_str(), overdue.reason.as_str()),
        ("True", "CompletedLate"),
        "completed after its deadline stays overdue: {overdue:?}"
    );

    // The table kubectl prints, rendered by the API server from the CRD's columns.
    let request = http::Request::get(format!("/apis/delenda.dev/v1alpha1/namespaces/{}/erasurerequests", f.ns))
        .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(Vec::new())
        .unwrap();
    let table: serde_json::Value = f.client.request(request).await.unwrap();
    let columns: Vec<&str> =
        table["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    for want in ["Phase", "Mode", "Overdue", "Erased", "Skipped", "Completed"] {
        assert!(columns.contains(&want), "{want} in {columns:?}");
    }
    let cell =
        |row: &serde_json::Value, name: &str| row["cells"][columns.iter().position(|c| *c == name).unwrap()].clone();
    let row = |name: &str| {
        table["rows"].as_array().unwrap().iter().find(|r| r["object"]["metadata"]["name"] == name).unwrap().clone()
    };
    let on_time = row("on-time");
    assert_eq!(cell(&on_time, "Phase"), "Completed");
    assert_eq!(cell(&on_time, "Mode"), "Enforce");
    assert_eq!(cell(&on_time, "Overdue"), "False");
    assert_eq!(cell(&on_time, "Skipped"), 0);
    assert!(cell(&on_time, "Completed").as_str().is_some_and(|s| !s.is_empty()), "{on_time}");
    assert_eq!(cell(&row("late"), "Overdue"), "True");
    operator.stop().await;
}
