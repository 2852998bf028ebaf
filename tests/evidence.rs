//! Durable evidence against the real kube-apiserver, PostgreSQL and S3
//! server (versitygw with object lock): chains outlive their policies and
//! cannot be taken over, roll over instead of losing records, are signed so
//! a rewrite without the key shows, tell truncation, reordering and
//! rewriting apart, and are copied to a locked bucket before an erasure
//! says it is done.
mod support;

use std::time::Duration;

use delenda::api::erasure::ErasurePhase;
use delenda::api::{ErasureRequest, RetentionPolicy};
use delenda::audit::{self, Verdict};
use delenda::controller::evidence::{self as chains, ERASURE_CHAIN, KEY, policy_chain, segment_name};
use delenda::engine::evidence::{Expectations, Finding, SealedEvidence, Signer, seal, verify};
use delenda::engine::sink::{EvidenceSink, SinkSettings};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use support::cluster::{EMAIL, Fixture, table_sql};
use support::eventually;

const SIGNING_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIHs4A147bDdEbdJcu8xrAlifUVZkh8ciIErIDVAq0yQf\n-----END PRIVATE KEY-----\n";

fn signer() -> Signer {
    Signer::from_pem(SIGNING_KEY).unwrap()
}

/// Runs a policy now and waits for its run `n` to be in its history.
async fn run_now(f: &Fixture, policy: &str, token: &str, n: usize) {
    let policies: Api<RetentionPolicy> = f.api();
    let patch = serde_json::json!({"metadata": {"annotations": {"delenda.dev/run-now": token}}});
    policies.patch(policy, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    eventually(&format!("run {n} of {policy}"), 60, async || {
        let status = policies.get(policy).await.ok()?.status?;
        (status.history.len() >= n && status.current_run.is_none()).then_some(())
    })
    .await;
}

/// Rewrites the text of a chain's one segment.
async fn rewrite_segment(f: &Fixture, chain: &str, edit: impl FnOnce(Vec<String>) -> Vec<String>) {
    let maps: Api<ConfigMap> = f.api();
    let name = segment_name(chain, 0);
    let mut map = maps.get(&name).await.unwrap();
    let lines: Vec<String> = map.data.as_ref().unwrap()[KEY].lines().map(str::to_owned).collect();
    let text: String = edit(lines).into_iter().map(|l| l + "\n").collect();
    map.data.as_mut().unwrap().insert(KEY.into(), text);
    maps.replace(&name, &PostParams::default(), &map).await.unwrap();
}

fn verdict<'a>(verdicts: &'a [Verdict], chain: &str, source: &str) -> &'a Verdict {
    verdicts
        .iter()
        .find(|v| v.chain == chain && v.source.contains(source))
        .unwrap_or_else(|| panic!("no verdict on {chain} from {source}: {verdicts:?}"))
}

fn kinds(v: &Verdict) -> Vec<&'static str> {
    match &v.result {
        Ok(_) => vec![],
        Err(findings) => findings.iter().map(Finding::kind).collect(),
    }
}

/// Situation 8: evidence is owned by nobody, so deleting a policy in Git
/// leaves it; a policy named `erasures` gets a chain of its own.
#[tokio::test]
async fn evidence_outlives_its_policy_and_no_policy_takes_over_the_erasure_chain() {
    let mut f = Fixture::new("ev-owner", None).await;
    let table = support::unique("erasures").replace('-', "_");
    f.sql(&table_sql(&table, 2, 2)).await;
    f.policy("erasures", "self", &[("tickets", &table, "email")]).await;
    f.identity_secret("subject", serde_json::json!({"email": EMAIL})).await;
    let mut settings = f.settings(true, Duration::from_secs(60));
    settings.signer = Some(signer());
    let operator = f.operator_with(settings);
    run_now(&f, "erasures", "t1", 1).await;
    f.request("request-1", "subject", serde_json::json!({})).await;
    f.status_when("request-1", "the erasure to complete", 60, |s| s.phase == Some(ErasurePhase::Completed)).await;

    let policy_records = chains::read_chain(&f.client, &f.ns, &policy_chain("erasures")).await.unwrap();
    let erasure_records = chains::read_chain(&f.client, &f.ns, ERASURE_CHAIN).await.unwrap();
    assert_eq!(policy_records.len(), 1);
    assert_eq!(policy_records[0].record["kind"], "RetentionRun");
    assert_eq!(erasure_records.len(), 1, "the policy named erasures did not write into the erasure chain");
    assert_eq!(erasure_records[0].record["kind"], "Erasure");
    assert_ne!(segment_name(&policy_chain("erasures"), 0), segment_name(ERASURE_CHAIN, 0));

    let maps: Api<ConfigMap> = f.api();
    for name in [segment_name(&policy_chain("erasures"), 0), segment_name(ERASURE_CHAIN, 0)] {
        let map = maps.get(&name).await.unwrap();
        assert!(map.metadata.owner_references.unwrap_or_default().is_empty(), "{name} has an owner");
    }
    // The policy is deleted in Git; its evidence stays and still verifies.
    let policies: Api<RetentionPolicy> = f.api();
    policies.delete("erasures", &DeleteParams::default()).await.unwrap();
    eventually("the policy to be gone", 30, async || policies.get_opt("erasures").await.ok()?.is_none().then_some(()))
        .await;
    let after = chains::read_chain(&f.client, &f.ns, &policy_chain("erasures")).await.unwrap();
    assert_eq!(after, policy_records);
    let expect = Expectations { keys: vec![signer().public_key()], from_start: true, ..Expectations::default() };
    assert_eq!(verify(&after, &expect).unwrap().signatures_checked, 1);
    // The records carry the format, the times of the run and of the verification.
    for key in ["startedAt", "finishedAt"] {
        assert!(erasure_records[0].record[key].is_string(), "{key}");
    }
    assert!(erasure_records[0].record["identityVerification"].get("verifiedAt").is_some());
    assert_eq!(erasure_records[0].format, 2);
    operator.stop().await;
}

/// Situation 9: a full segment rolls over into the next, closed for good;
/// nothing is trimmed; the chain runs across segments.
#[tokio::test]
async fn a_full_segment_rolls_over_and_is_closed_and_nothing_is_trimmed() {
    let f = Fixture::new("ev-segments", None).await;
    let signer = signer();
    let pad = "x".repeat(100 * 1024);
    for i in 0..20 {
        let record = serde_json::json!({"kind": "Test", "n": i, "pad": pad});
        chains::append(&f.client, &f.ns, ERASURE_CHAIN, &record, Some(&signer), None).await.unwrap();
    }
    let segments = chains::segments(&f.client, &f.ns, ERASURE_CHAIN).await.unwrap();
    assert!(segments.len() >= 3, "20 records of 100 KiB fill more than two segments: {}", segments.len());
    assert_eq!(segments.iter().map(|s| s.number).collect::<Vec<_>>(), (0..segments.len() as u32).collect::<Vec<_>>());
    for pair in segments.windows(2) {
        assert!(pair[0].closed, "segment {} is closed once full", pair[0].number);
        let last = pair[0].records.last().unwrap();
        let first = pair[1].records.first().unwrap();
        assert_eq!(
            first.previous_digest.as_ref(),
            Some(&last.digest),
            "each segment opens with the digest of the one before"
        );
        assert_eq!(first.index, last.index + 1);
    }
    assert!(!segments.last().unwrap().closed);
    let all: Vec<SealedEvidence> = segments.iter().flat_map(|s| s.records.clone()).collect();
    assert_eq!(all.len(), 20, "nothing trimmed");
    let expect = Expectations { keys: vec![signer.public_key()], from_start: true, ..Expectations::default() };
    assert_eq!(verify(&all, &expect).unwrap().records, 20);

    // A closed segment cannot be rewritten, only deleted; deleting one shows.
    let maps: Api<ConfigMap> = f.api();
    let mut closed = maps.get(&segments[0].name).await.unwrap();
    closed.data.as_mut().unwrap().insert(KEY.into(), String::new());
    let refused = maps.replace(&segments[0].name, &PostParams::default(), &closed).await;
    assert!(matches!(refused, Err(kube::Error::Api(ref s)) if s.code == 422), "{refused:?}");
    maps.delete(&segments[1].name, &DeleteParams::default()).await.unwrap();
    let gapped = chains::read_chain(&f.client, &f.ns, ERASURE_CHAIN).await.unwrap();
    let findings = verify(&gapped, &expect).unwrap_err();
    assert_eq!(findings.iter().map(Finding::kind).collect::<Vec<_>>(), ["records missing"], "{findings:?}");
}

/// Situation 10: with the operator's public key, a rewrite without the key,
/// a reordering and a truncation of a chain in the cluster are told apart;
/// the truncation by the digests in status.
#[tokio::test]
async fn verify_tells_rewriting_reordering_and_truncation_apart_in_the_cluster() {
    let mut f = Fixture::new("ev-tamper", None).await;
    let table = support::unique("visits").replace('-', "_");
    f.sql(&table_sql(&table, 0, 3)).await;
    f.policy("visits", "self", &[("visits", &table, "email")]).await;
    let mut settings = f.settings(true, Duration::from_secs(60));
    settings.signer = Some(signer());
    let operator = f.operator_with(settings);
    for (i, token) in ["t1", "t2", "t3"].iter().enumerate() {
        run_now(&f, "visits", token, i + 1).await;
    }
    operator.stop().await;
    let chain = policy_chain("visits");
    let keys = [signer().public_key()];
    let check = async || audit::verify_namespace(&f.client, &f.ns, Some(&chain), &keys, None).await.unwrap();
    let intact = check().await;
    let v = verdict(&intact, &chain, "namespace");
    assert!(v.ok(), "{}", audit::render(&intact));
    assert_eq!(v.result.as_ref().unwrap().signatures_checked, 3);
    let original: Vec<String> = {
        let maps: Api<ConfigMap> = f.api();
        let map = maps.get(&segment_name(&chain, 0)).await.unwrap();
        map.data.unwrap()[KEY].lines().map(str::to_owned).collect()
    };

    // Truncated: the newest record removed. The status still names it.
    rewrite_segment(&f, &chain, |mut l| {
        l.pop();
        l
    })
    .await;
    let v = check().await;
    assert_eq!(kinds(verdict(&v, &chain, "namespace")), ["truncated"], "{}", audit::render(&v));

    // Reordered.
    let lines = original.clone();
    rewrite_segment(&f, &chain, |_| vec![lines[0].clone(), lines[2].clone(), lines[1].clone()]).await;
    let v = check().await;
    assert!(kinds(verdict(&v, &chain, "namespace")).contains(&"reordered"), "{}", audit::render(&v));

    // Rewritten and resealed without the key: the digests fit, the signatures do not.
    let records: Vec<SealedEvidence> = original.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut forged = vec![records[0].clone()];
    for r in &records[1..] {
        let mut record = r.record.clone();
        record["targets"][0]["records"]["deleted"] = serde_json::json!(0);
        forged.push(seal(&chain, Some(&forged.last().unwrap().head()), record, None));
    }
    let text: Vec<String> = forged.iter().map(|r| serde_json::to_string(r).unwrap()).collect();
    rewrite_segment(&f, &chain, |_| text).await;
    let v = check().await;
    let k = kinds(verdict(&v, &chain, "namespace"));
    assert!(k.contains(&"rewritten"), "{}", audit::render(&v));
    assert!(audit::render(&v).contains("is not signed by the operator's key"), "{}", audit::render(&v));
}

fn sink(bucket: &str) -> EvidenceSink {
    EvidenceSink::new(SinkSettings {
        s3: support::s3::settings(),
        bucket: bucket.to_owned(),
        prefix: "evidence/".into(),
        retention: Duration::from_secs(86_400),
    })
}

/// The sink: an erasure is not Completed, and its Secret not deleted, until
/// its record is locked in the bucket; every record is locked in compliance
/// mode and cannot be deleted; verify reads the sink and finds a cluster
/// chain cut short.
#[tokio::test]
async fn every_record_is_locked_in_the_sink_before_an_erasure_completes() {
    let mut f = Fixture::new("ev-sink", None).await;
    let table = support::unique("tickets").replace('-', "_");
    f.sql(&table_sql(&table, 2, 2)).await;
    f.policy("tickets", "self", &[("tickets", &table, "email")]).await;
    f.identity_secret("subject", serde_json::json!({"email": EMAIL})).await;
    // The bucket does not exist yet: the sink cannot take the record.
    let store = support::s3::store();
    let bucket = support::unique("dl-sink");
    let mut settings = f.settings(true, Duration::from_secs(2));
    settings.signer = Some(signer());
    settings.sink = Some(std::sync::Arc::new(sink(&bucket)));
    let operator = f.operator_with(settings);
    f.request("request-1", "subject", serde_json::json!({})).await;
    let pending = f
        .status_when("request-1", "the evidence to wait for the sink", 60, |s| {
            s.conditions.iter().any(|c| c.type_ == "EvidenceStored" && c.status == "False")
        })
        .await;
    let stored = pending.conditions.iter().find(|c| c.type_ == "EvidenceStored").unwrap();
    assert_eq!(stored.reason, "SinkUnavailable", "{stored:?}");
    assert_eq!(pending.phase, Some(ErasurePhase::InProgress), "not done while the locked copy is missing");
    assert!(pending.completed_at.is_none());
    assert_eq!(f.count(&table).await, 0, "the erasure itself happened");
    let secrets: Api<Secret> = f.api();
    assert!(secrets.get_opt("subject").await.unwrap().is_some(), "the Secret waits for the evidence");

    // The bucket appears, with object lock: the next pass locks the record and completes.
    support::reach(
        store.client().create_bucket().bucket(&bucket).object_lock_enabled_for_bucket(true).send().await,
        support::s3::SERVER,
    );
    let done =
        f.status_when("request-1", "the erasure to complete", 60, |s| s.phase == Some(ErasurePhase::Completed)).await;
    let stored = done.conditions.iter().find(|c| c.type_ == "EvidenceStored").unwrap();
    assert_eq!(stored.status, "True", "{stored:?}");
    let records = chains::read_chain(&f.client, &f.ns, ERASURE_CHAIN).await.unwrap();
    assert_eq!(records.len(), 1, "sealed once, copied when the sink came back");
    let key = format!("evidence/{}/erasures/{:012}.json", f.ns, records[0].index);
    let retention = store.client().get_object_retention().bucket(&bucket).key(&key).send().await;
    let locked = match retention {
        Ok(out) => out.retention().and_then(|r| r.mode()).map(|m| m.as_str().to_owned()),
        // versitygw answers <ObjectLockRetention>, which the SDK cannot parse: read the body.
        Err(e) => {
            let body = e.raw_response().and_then(|r| r.body().bytes()).map(|b| String::from_utf8_lossy(b).into_owned());
            body.filter(|b| b.contains("COMPLIANCE")).map(|_| "COMPLIANCE".to_owned())
        }
    };
    assert_eq!(locked.as_deref(), Some("COMPLIANCE"), "the record is locked in compliance mode");
    let versions = support::s3::versions(&store, &bucket).await;
    let (_, version, _) = versions.iter().find(|(k, _, _)| *k == key).unwrap().clone();
    let delete = store.client().delete_object().bucket(&bucket).key(&key).version_id(&version).send().await;
    assert!(delete.is_err(), "a locked record cannot be deleted");
    eventually("the Secret to be deleted once the evidence is locked", 30, async || {
        secrets.get_opt("subject").await.ok()?.is_none().then_some(())
    })
    .await;

    // Verify reads the sink too; a cluster chain cut short is found by it.
    let erasures: Api<ErasureRequest> = f.api();
    let keys = [signer().public_key()];
    let v = audit::verify_namespace(&f.client, &f.ns, Some(ERASURE_CHAIN), &keys, Some(&sink(&bucket))).await.unwrap();
    assert!(v.iter().all(Verdict::ok), "{}", audit::render(&v));
    assert!(verdict(&v, ERASURE_CHAIN, "sink").ok());
    // Someone empties the segment and deletes the request, whose status named the digest.
    erasures.delete("request-1", &DeleteParams::default()).await.unwrap();
    rewrite_segment(&f, ERASURE_CHAIN, |_| Vec::new()).await;
    let v = audit::verify_namespace(&f.client, &f.ns, Some(ERASURE_CHAIN), &keys, Some(&sink(&bucket))).await.unwrap();
    assert!(verdict(&v, ERASURE_CHAIN, "sink").ok(), "the locked copy is intact: {}", audit::render(&v));
    assert_eq!(kinds(verdict(&v, ERASURE_CHAIN, "namespace")), ["truncated"], "{}", audit::render(&v));
    assert!(audit::render(&v).contains("the locked sink knows"), "{}", audit::render(&v));
    operator.stop().await;
}

/// A policy's run with the sink down is not proven compliant until its
/// record is locked; then its verdict stands.
#[tokio::test]
async fn a_run_is_proven_only_once_its_evidence_is_locked() {
    let mut f = Fixture::new("ev-sink-run", None).await;
    let table = support::unique("visits").replace('-', "_");
    f.sql(&table_sql(&table, 0, 3)).await;
    f.policy("visits", "self", &[("visits", &table, "email")]).await;
    let store = support::s3::store();
    let bucket = support::unique("dl-sink");
    let mut settings = f.settings(true, Duration::from_secs(2));
    settings.signer = Some(signer());
    settings.sink = Some(std::sync::Arc::new(sink(&bucket)));
    let operator = f.operator_with(settings);
    run_now(&f, "visits", "t1", 1).await;
    let policies: Api<RetentionPolicy> = f.api();
    let condition = async |type_: &str| {
        let status = policies.get("visits").await.unwrap().status.unwrap();
        status.conditions.into_iter().find(|c| c.type_ == type_).unwrap()
    };
    let compliant = condition("Compliant").await;
    assert_eq!((compliant.status.as_str(), compliant.reason.as_str()), ("Unknown", "EvidencePending"), "{compliant:?}");
    assert!(compliant.message.starts_with("Verified: "), "the verdict is held: {}", compliant.message);
    assert_eq!(condition("EvidenceStored").await.reason, "SinkUnavailable");

    support::reach(
        store.client().create_bucket().bucket(&bucket).object_lock_enabled_for_bucket(true).send().await,
        support::s3::SERVER,
    );
    eventually("the sink to catch up and the verdict to stand", 60, async || {
        let status = policies.get("visits").await.ok()?.status?;
        let c = status.conditions.iter().find(|c| c.type_ == "Compliant")?;
        let stored = status.conditions.iter().find(|c| c.type_ == "EvidenceStored")?;
        (c.status == "True" && stored.status == "True").then_some(())
    })
    .await;
    let compliant = condition("Compliant").await;
    assert_eq!(compliant.reason, "Verified");
    assert!(!compliant.message.contains("not yet locked"), "{}", compliant.message);
    let locked = sink(&bucket).read_chain(&f.ns, &policy_chain("visits")).await.unwrap();
    assert_eq!(locked, chains::read_chain(&f.client, &f.ns, &policy_chain("visits")).await.unwrap());
    operator.stop().await;
}
