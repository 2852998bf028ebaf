//! The operator end to end, against the real kube-apiserver and the real
//! PostgreSQL: a DataStore becomes Ready, a RetentionPolicy runs, deletes
//! exactly what is due, and leaves its outcome and evidence in status.
mod support;

use support::{eventually, manifest};

use std::time::Duration;

use delenda::api::{DataStore, RetentionPolicy};
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::Api;
use kube::api::{ListParams, PostParams};
use sqlx::{Connection, PgConnection};

/// A DataStore for the test PostgreSQL, its credentials in `secret`.
fn postgres_datastore(name: &str, secret: &str) -> DataStore {
    let parsed = url::Url::parse(&support::setting("POSTGRES_URL", "PostgreSQL")).unwrap();
    manifest(serde_json::json!({
        "apiVersion": "delenda.dev/v1alpha1", "kind": "DataStore", "metadata": {"name": name},
        "spec": {"postgres": {"host": "127.0.0.1", "port": parsed.port().unwrap(),
            "database": parsed.path().trim_start_matches('/'), "credentialsSecret": {"name": secret}, "tls": "Disable"}}
    }))
}

fn settings(ns: &str, digester: Option<delenda::engine::evidence::SubjectDigester>) -> delenda::controller::Settings {
    delenda::controller::Settings {
        identity: format!("test-{ns}"),
        digester,
        namespace: Some(ns.to_owned()),
        lease_namespace: Some(ns.to_owned()),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_policy_runs_on_request_deletes_what_is_due_and_proves_it_in_status() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = support::kube_client().await;
    support::install_crds(&client).await;
    let ns = support::fresh_namespace(&client, "operator").await;

    let url = support::setting("POSTGRES_URL", "PostgreSQL");
    let parsed = url::Url::parse(&url).unwrap();
    let mut conn = support::reach(PgConnection::connect(&url).await, "PostgreSQL");
    let table = support::unique("contacts").replace('-', "_");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {table} (id bigint PRIMARY KEY, service_ended_at timestamptz, email text);
         INSERT INTO {table} SELECT g, now() - interval '3 days', 'gone' || g || '@example.nl' FROM generate_series(1, 25) g;
         INSERT INTO {table} SELECT g, NULL, 'active' || g || '@example.nl' FROM generate_series(26, 40) g;"
    )))
    .execute(&mut conn)
    .await
    .unwrap();

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    secrets
        .create(
            &PostParams::default(),
            &manifest(serde_json::json!({
                "metadata": {"name": "crm-db"},
                "stringData": {"username": parsed.username(), "password": parsed.password().unwrap()}
            })),
        )
        .await
        .unwrap();
    let stores: Api<DataStore> = Api::namespaced(client.clone(), &ns);
    stores.create(&PostParams::default(), &postgres_datastore("crm", "crm-db")).await.unwrap();
    let policies: Api<RetentionPolicy> = Api::namespaced(client.clone(), &ns);
    policies
        .create(
            &PostParams::default(),
            &manifest(serde_json::json!({
                "apiVersion": "delenda.dev/v1alpha1", "kind": "RetentionPolicy",
                "metadata": {"name": "contact-persons", "annotations": {"delenda.dev/run-now": "t1"}},
                "spec": {"category": "contact-persons", "description": "Contact persons, until end of service",
                    "responsibleParty": "self", "legalBasis": "Contract", "retention": {"period": "1d"},
                    "schedule": {"cron": "0 3 1 1 *", "timeZone": "Europe/Amsterdam"}, "mode": "Enforce",
                    "targets": [{"name": "contacts", "dataStoreRef": {"name": "crm"},
                        "table": {"name": table, "timeColumn": "service_ended_at"},
                        "subjectFields": [{"identity": "email", "field": "email"}]}]}
            })),
        )
        .await
        .unwrap();

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let operator = tokio::spawn(delenda::controller::run(client.clone(), settings(&ns, None), async move {
        let _ = stopped.await;
    }));

    let ready = eventually("the DataStore to become Ready", 60, async || {
        let ds = stores.get("crm").await.ok()?;
        let status = ds.status?;
        status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True").then_some(status)
    })
    .await;
    assert_eq!(ready.store_type.as_deref(), Some("postgres"));
    let version = ready.server_version.unwrap();
    assert!(version.starts_with(|c: char| c.is_ascii_digit()), "server version {version:?}");

    let status = eventually("the policy's run to finish", 90, async || {
        let p = policies.get("contact-persons").await.ok()?;
        let status = p.status?;
        status.last_run.is_some().then_some(status)
    })
    .await;
    let run = status.last_run.unwrap();
    assert_eq!(run.outcome.as_deref(), Some("Succeeded"));
    assert_eq!(run.targets[0].records.matched, 25);
    assert_eq!(run.targets[0].records.deleted, 25);
    assert_eq!(run.targets[0].records.remaining, Some(0));
    assert!(run.digest.as_deref().unwrap().starts_with("sha256:"));
    assert!(status.current_run.is_none(), "the run is recorded as finished");
    let compliant = status.conditions.iter().find(|c| c.type_ == "Compliant").unwrap();
    assert_eq!(compliant.status, "True", "{compliant:?}");
    assert!(status.next_run.is_some());

    let left: Vec<(i64, Option<String>)> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT id, email FROM {table} ORDER BY id")))
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(left.len(), 15);
    assert!(left.iter().all(|(id, email)| *id > 25 && email.as_deref().unwrap().starts_with("active")));

    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let reasons = eventually("the run's Events", 30, async || {
        let list = events.list(&ListParams::default()).await.ok()?;
        let reasons: Vec<String> = list.items.into_iter().filter_map(|e| e.reason).collect();
        reasons.iter().any(|r| r == "RunSucceeded").then_some(reasons)
    })
    .await;
    assert!(reasons.iter().any(|r| r == "RunStarted"), "{reasons:?}");

    // The durable evidence: the chain in its ConfigMap seals this run; the
    // ConfigMap belongs to nobody, so it outlives the policy.
    let lines = delenda::controller::evidence::read_chain(&client, &ns, "policy/contact-persons").await.unwrap();
    assert_eq!(lines.len(), 1);
    assert_eq!(Some(lines[0].digest.to_string()), run.digest.clone());
    let expect = delenda::engine::evidence::Expectations { from_start: true, ..Default::default() };
    assert!(delenda::engine::evidence::verify(&lines, &expect).is_ok());
    let maps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), &ns);
    let segment = maps.get("delenda-evidence.policy.contact-persons.000000").await.expect("the evidence ConfigMap");
    assert!(segment.metadata.owner_references.unwrap_or_default().is_empty(), "evidence is owned by nobody");
    assert_eq!(lines[0].record["targets"][0]["records"]["deleted"], 25);

    // The same run-now token does not run the policy again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let again = policies.get("contact-persons").await.unwrap().status.unwrap();
    assert_eq!(again.history.len(), 1, "one request, one run");

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), operator).await.expect("the operator shuts down").unwrap();
}

#[tokio::test]
async fn an_erasure_request_erases_retains_proves_and_forgets_the_identities() {
    const EMAIL: &str = "jan.jansen@example.nl";
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = support::kube_client().await;
    support::install_crds(&client).await;
    let ns = support::fresh_namespace(&client, "erasure").await;

    let url = support::setting("POSTGRES_URL", "PostgreSQL");
    let parsed = url::Url::parse(&url).unwrap();
    let mut conn = support::reach(PgConnection::connect(&url).await, "PostgreSQL");
    let tickets = support::unique("tickets").replace('-', "_");
    let traffic = support::unique("traffic").replace('-', "_");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {tickets} (id bigint PRIMARY KEY, created_at timestamptz, requester text);
         INSERT INTO {tickets} SELECT g, now(), 'other' || g || '@example.nl' FROM generate_series(1, 10) g;
         INSERT INTO {tickets} VALUES (11, now(), '{EMAIL}'), (12, now(), '{EMAIL}');
         CREATE TABLE {traffic} (id bigint PRIMARY KEY, seen_at timestamptz, subscriber text);
         INSERT INTO {traffic} VALUES (1, now(), '{EMAIL}'), (2, now(), 'other@example.nl');"
    )))
    .execute(&mut conn)
    .await
    .unwrap();

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    for (name, data) in [
        ("crm-db", serde_json::json!({"username": parsed.username(), "password": parsed.password().unwrap()})),
        ("subject-1", serde_json::json!({"email": EMAIL})),
    ] {
        secrets
            .create(
                &PostParams::default(),
                &manifest(serde_json::json!({"metadata": {"name": name,
                    "labels": if name.starts_with("subject") { serde_json::json!({"delenda.dev/identity": "true"}) } else { serde_json::json!({}) }},
                    "stringData": data})),
            )
            .await
            .unwrap();
    }
    let stores: Api<DataStore> = Api::namespaced(client.clone(), &ns);
    stores.create(&PostParams::default(), &postgres_datastore("crm", "crm-db")).await.unwrap();
    let policies: Api<RetentionPolicy> = Api::namespaced(client.clone(), &ns);
    for (name, basis, table, time, column) in [
        ("support-tickets", "Contract", &tickets, "created_at", "requester"),
        ("traffic-data", "LegalObligation", &traffic, "seen_at", "subscriber"),
    ] {
        policies
            .create(&PostParams::default(), &manifest(serde_json::json!({
                "apiVersion": "delenda.dev/v1alpha1", "kind": "RetentionPolicy", "metadata": {"name": name},
                "spec": {"category": name, "description": name, "responsibleParty": "self", "legalBasis": basis,
                    "retention": {"period": "6mo"}, "schedule": {"cron": "0 3 1 1 *", "timeZone": "Europe/Amsterdam"},
                    "mode": "DryRun",
                    "targets": [{"name": "main", "dataStoreRef": {"name": "crm"},
                        "table": {"name": table, "timeColumn": time},
                        "subjectFields": [{"identity": "email", "field": column}]}]}
            })))
            .await
            .unwrap();
    }
    let requests: Api<delenda::api::ErasureRequest> = Api::namespaced(client.clone(), &ns);
    requests
        .create(
            &PostParams::default(),
            &manifest(serde_json::json!({
                "apiVersion": "delenda.dev/v1alpha1", "kind": "ErasureRequest", "metadata": {"name": "request-1"},
                "spec": {"identitySecretRef": {"name": "subject-1"}, "ground": "NoLongerNecessary",
                    "receivedAt": "2026-11-20T09:00:00Z", "deleteIdentitySecret": true,
                    "identityVerification": {"verifiedBy": "privacy-office", "method": "IdentityDocument"}}
            })),
        )
        .await
        .unwrap();

    let key = delenda::engine::evidence::SubjectDigester::new(&[9u8; 32]).unwrap();
    let digest = key.for_namespace(&ns).digest("email", EMAIL);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let operator = tokio::spawn(delenda::controller::run(client.clone(), settings(&ns, Some(key)), async move {
        let _ = stopped.await;
    }));

    let status = eventually("the request to complete", 90, async || {
        let status = requests.get("request-1").await.ok()?.status?;
        (status.phase == Some(delenda::api::erasure::ErasurePhase::Completed)).then_some(status)
    })
    .await;
    let outcome = |policy: &str| status.targets.iter().find(|t| t.policy == policy).unwrap().clone();
    assert_eq!(outcome("support-tickets").outcome, "Erased");
    assert_eq!(outcome("support-tickets").erased, 2);
    assert_eq!(outcome("support-tickets").remaining, Some(0));
    assert_eq!(outcome("traffic-data").outcome, "Retained");
    assert!(outcome("traffic-data").retained_until.is_some());
    assert!(outcome("traffic-data").retained_under.unwrap().contains("traffic-data"));
    assert_eq!(status.summary.as_ref().unwrap().erased, 2);
    assert_eq!(status.summary.as_ref().unwrap().retained, 1);
    assert_eq!(status.deadline.as_ref().unwrap().0, "2026-12-20T09:00:00Z".parse().unwrap());
    assert_eq!(status.subject_digests["email"], digest);
    let chain = delenda::controller::evidence::read_chain(&client, &ns, "erasures").await.unwrap();
    let text = serde_json::to_string(&chain).unwrap();
    assert!(!text.contains(EMAIL), "the evidence holds the identity");
    let sealed = chain.last().unwrap().clone();
    assert_eq!(Some(sealed.digest.to_string()), status.evidence_digest.clone());
    assert_eq!(sealed.record["subjectDigests"]["email"], digest);
    assert!(status.evidence_digest.as_deref().unwrap().starts_with("sha256:"));

    let left: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {tickets}")))
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 10, "only the subject's tickets went");
    let kept: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {traffic}")))
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(kept, 2, "traffic data stays under the legal obligation");

    eventually("the identity Secret to be deleted", 30, async || {
        secrets.get_opt("subject-1").await.ok()?.is_none().then_some(())
    })
    .await;

    // The identity appears nowhere in what the operator wrote.
    let written = serde_json::to_string(&requests.get("request-1").await.unwrap()).unwrap();
    let events = serde_json::to_string(
        &Api::<Event>::namespaced(client.clone(), &ns).list(&ListParams::default()).await.unwrap(),
    )
    .unwrap();
    for text in [&written, &events] {
        assert!(!text.contains(EMAIL) && !text.contains("jansen"), "the identity leaked: {text}");
    }

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), operator).await.expect("the operator shuts down").unwrap();
}

#[tokio::test]
async fn with_two_instances_only_the_leader_reconciles_and_a_follower_takes_over() {
    use k8s_openapi::api::coordination::v1::Lease;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = support::kube_client().await;
    support::install_crds(&client).await;
    let ns = support::fresh_namespace(&client, "leader").await;

    let url = support::setting("POSTGRES_URL", "PostgreSQL");
    let parsed = url::Url::parse(&url).unwrap();
    let mut conn = support::reach(PgConnection::connect(&url).await, "PostgreSQL");
    let table = support::unique("calls").replace('-', "_");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {table} (id bigint PRIMARY KEY, started_at timestamptz);
         INSERT INTO {table} SELECT g, now() - interval '400 days' FROM generate_series(1, 30) g;"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    secrets
        .create(
            &PostParams::default(),
            &manifest(serde_json::json!({"metadata": {"name": "billing-db"},
            "stringData": {"username": parsed.username(), "password": parsed.password().unwrap()}})),
        )
        .await
        .unwrap();
    let stores: Api<DataStore> = Api::namespaced(client.clone(), &ns);
    stores.create(&PostParams::default(), &postgres_datastore("billing", "billing-db")).await.unwrap();

    let start = |identity: &str| {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let mut s = settings(&ns, None);
        s.identity = identity.to_owned();
        let handle = tokio::spawn(delenda::controller::run(client.clone(), s, async move {
            let _ = stopped.await;
        }));
        (stop, handle)
    };
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let holder = async || leases.get_opt("delenda-controller").await.ok()??.spec?.holder_identity;

    let (stop_a, a) = start("instance-a");
    eventually("instance-a to hold the lease", 60, async || (holder().await? == "instance-a").then_some(())).await;
    let (stop_b, b) = start("instance-b");

    let policies: Api<RetentionPolicy> = Api::namespaced(client.clone(), &ns);
    let policy = |token: &str| -> RetentionPolicy {
        manifest(serde_json::json!({
            "apiVersion": "delenda.dev/v1alpha1", "kind": "RetentionPolicy",
            "metadata": {"name": "usage-data", "annotations": {"delenda.dev/run-now": token}},
            "spec": {"category": "usage-data", "description": "Call detail records", "responsibleParty": "self",
                "legalBasis": "Contract", "retention": {"period": "6mo"},
                "schedule": {"cron": "0 3 1 1 *", "timeZone": "Europe/Amsterdam"}, "mode": "Enforce",
                "targets": [{"name": "cdr", "dataStoreRef": {"name": "billing"},
                    "table": {"name": table, "timeColumn": "started_at"}}]}
        }))
    };
    policies.create(&PostParams::default(), &policy("t1")).await.unwrap();
    eventually("the first run", 60, async || {
        (policies.get("usage-data").await.ok()?.status?.history.len() == 1).then_some(())
    })
    .await;

    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let instances = async || -> Vec<String> {
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|e| e.reporting_instance)
            .collect()
    };
    let seen = instances().await;
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|i| i == "instance-a"), "only the leader acts: {seen:?}");
    assert_eq!(holder().await.as_deref(), Some("instance-a"));

    // The leader stops; the follower is elected and does the next run.
    let _ = stop_a.send(());
    tokio::time::timeout(Duration::from_secs(30), a).await.expect("instance-a stops").unwrap();
    eventually("instance-b to take the lease", 60, async || (holder().await? == "instance-b").then_some(())).await;
    let mut current = policies.get("usage-data").await.unwrap();
    current.metadata.annotations.as_mut().unwrap().insert("delenda.dev/run-now".into(), "t2".into());
    current.metadata.managed_fields = None;
    policies.replace("usage-data", &PostParams::default(), &current).await.unwrap();
    eventually("the second run, by instance-b", 60, async || {
        (policies.get("usage-data").await.ok()?.status?.history.len() == 2).then_some(())
    })
    .await;
    assert!(instances().await.iter().any(|i| i == "instance-b"));
    let left: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 0);

    let _ = stop_b.send(());
    tokio::time::timeout(Duration::from_secs(30), b).await.expect("instance-b stops").unwrap();
}

#[tokio::test]
async fn datastores_of_every_kind_become_ready_against_their_real_servers() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = support::kube_client().await;
    support::install_crds(&client).await;
    let ns = support::fresh_namespace(&client, "kinds").await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    secrets
        .create(
            &PostParams::default(),
            &manifest(serde_json::json!({"metadata": {"name": "s3-keys"}, "stringData": {
            "accessKeyId": support::setting("S3_ACCESS_KEY_ID", "the S3 server"),
            "secretAccessKey": support::setting("S3_SECRET_ACCESS_KEY", "the S3 server")}})),
        )
        .await
        .unwrap();
    let logs = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/etc", logs.path().join("etc-link")).unwrap();
    let stores: Api<DataStore> = Api::namespaced(client.clone(), &ns);
    for (name, spec) in [
        (
            "recordings",
            serde_json::json!({"s3": {"endpoint": support::setting("S3_ENDPOINT", "the S3 server"),
            "region": support::setting("S3_REGION", "the S3 server"), "pathStyle": true, "credentialsSecret": {"name": "s3-keys"}}}),
        ),
        ("traffic", serde_json::json!({"opensearch": {"url": support::setting("OPENSEARCH_URL", "OpenSearch")}})),
        ("web-logs", serde_json::json!({"files": {"root": logs.path().to_str().unwrap()}})),
        // Outside the installation's allowed roots: a namespace user cannot
        // point the operator at whatever is mounted into it.
        ("secrets-dir", serde_json::json!({"files": {"root": "/etc"}})),
        // A link inside an allowed root that leads out of it.
        ("escape", serde_json::json!({"files": {"root": format!("{}/etc-link", logs.path().display())}})),
        ("nowhere", serde_json::json!({"opensearch": {"url": "http://127.0.0.1:9"}})),
    ] {
        stores
            .create(
                &PostParams::default(),
                &manifest(serde_json::json!({
                "apiVersion": "delenda.dev/v1alpha1", "kind": "DataStore", "metadata": {"name": name}, "spec": spec})),
            )
            .await
            .unwrap();
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut allowed = settings(&ns, None);
    allowed.allowed_roots = vec![logs.path().to_owned()];
    let operator = tokio::spawn(delenda::controller::run(client.clone(), allowed, async move {
        let _ = stopped.await;
    }));
    for (name, kind, ready) in [
        ("recordings", "s3", "True"),
        ("traffic", "opensearch", "True"),
        ("web-logs", "files", "True"),
        ("secrets-dir", "files", "False"),
        ("escape", "files", "False"),
        ("nowhere", "opensearch", "False"),
    ] {
        let status = eventually(&format!("DataStore {name} to be probed"), 60, async || {
            let status = stores.get(name).await.ok()?.status?;
            status.conditions.iter().any(|c| c.type_ == "Ready").then_some(status)
        })
        .await;
        let condition = status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(status.store_type.as_deref(), Some(kind));
        assert_eq!(condition.status, ready, "{name}: {condition:?}");
        if name == "secrets-dir" || name == "escape" {
            assert_eq!(condition.reason, "PathNotAllowed", "{condition:?}");
            assert!(condition.message.contains("outside the directories this installation allows"), "{condition:?}");
        } else if ready == "False" {
            assert_eq!(condition.reason, "Unreachable", "{condition:?}");
            assert!(condition.message.contains("127.0.0.1:9") || condition.message.contains("reach"), "{condition:?}");
        }
    }
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), operator).await.expect("the operator shuts down").unwrap();
}

#[tokio::test]
async fn a_fixed_secret_reprobes_its_datastore_and_a_late_request_is_overdue() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = support::kube_client().await;
    support::install_crds(&client).await;
    let ns = support::fresh_namespace(&client, "reprobe").await;
    let url = support::setting("POSTGRES_URL", "PostgreSQL");
    let parsed = url::Url::parse(&url).unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    secrets
        .create(
            &PostParams::default(),
            &manifest(serde_json::json!({"metadata": {"name": "crm-db"},
            "stringData": {"username": parsed.username(), "password": "wrong-password"}})),
        )
        .await
        .unwrap();
    let stores: Api<DataStore> = Api::namespaced(client.clone(), &ns);
    stores.create(&PostParams::default(), &postgres_datastore("crm", "crm-db")).await.unwrap();
    let requests: Api<delenda::api::ErasureRequest> = Api::namespaced(client.clone(), &ns);
    requests
        .create(&PostParams::default(), &manifest(serde_json::json!({
            "apiVersion": "delenda.dev/v1alpha1", "kind": "ErasureRequest", "metadata": {"name": "late"},
            "spec": {"identitySecretRef": {"name": "not-there"}, "ground": "Objection", "receivedAt": "2026-01-05T10:00:00Z",
                "identityVerification": {"verifiedBy": "privacy-office", "method": "KnownContactChannel"}}
        })))
        .await
        .unwrap();
    let key = delenda::engine::evidence::SubjectDigester::new(&[1u8; 32]).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let operator = tokio::spawn(delenda::controller::run(client.clone(), settings(&ns, Some(key)), async move {
        let _ = stopped.await;
    }));

    let refused = eventually("the wrong password to be reported", 60, async || {
        let c = stores.get("crm").await.ok()?.status?.conditions.into_iter().find(|c| c.type_ == "Ready")?;
        (c.status == "False").then_some(c)
    })
    .await;
    assert_eq!(refused.reason, "AuthenticationFailed", "{refused:?}");
    assert!(!refused.message.contains("wrong-password"), "a condition must not show a credential: {refused:?}");

    let fixed: Secret = manifest(serde_json::json!({"metadata": {"name": "crm-db"},
        "stringData": {"username": parsed.username(), "password": parsed.password().unwrap()}}));
    secrets.replace("crm-db", &PostParams::default(), &fixed).await.unwrap();
    // Well before the 30 s retry: the Secret's change itself re-probes.
    eventually("the fixed Secret to make the store Ready", 20, async || {
        let c = stores.get("crm").await.ok()?.status?.conditions.into_iter().find(|c| c.type_ == "Ready")?;
        (c.status == "True").then_some(())
    })
    .await;

    let status = eventually("the late request to be marked overdue", 60, async || {
        let status = requests.get("late").await.ok()?.status?;
        status.conditions.iter().any(|c| c.type_ == "Overdue" && c.status == "True").then_some(status)
    })
    .await;
    assert_eq!(status.phase, Some(delenda::api::erasure::ErasurePhase::Pending));
    assert_eq!(status.deadline.unwrap().0, "2026-02-05T10:00:00Z".parse().unwrap());
    let valid = status.conditions.iter().find(|c| c.type_ == "Valid").unwrap();
    assert_eq!((valid.status.as_str(), valid.reason.as_str()), ("False", "SecretNotFound"), "{valid:?}");

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), operator).await.expect("the operator shuts down").unwrap();
}

#[tokio::test]
async fn concurrent_writers_never_fork_an_evidence_chain() {
    let client = support::kube_client().await;
    let ns = support::fresh_namespace(&client, "chain").await;
    let writers = (0..6).map(|i| {
        let client = client.clone();
        let ns = ns.clone();
        tokio::spawn(async move {
            let record = serde_json::json!({"kind": "Erasure", "request": format!("{ns}/r{i}")});
            delenda::controller::evidence::append(&client, &ns, "erasures", &record, None, None).await.unwrap()
        })
    });
    let sealed: Vec<_> = futures::future::join_all(writers).await.into_iter().map(Result::unwrap).collect();
    let chain = delenda::controller::evidence::read_chain(&client, &ns, "erasures").await.unwrap();
    assert_eq!(chain.len(), 6);
    let expect = delenda::engine::evidence::Expectations { from_start: true, ..Default::default() };
    let verdict = delenda::engine::evidence::verify(&chain, &expect);
    assert!(verdict.is_ok(), "the chain forked: {verdict:?}");
    for s in &sealed {
        assert!(chain.iter().any(|c| c.digest == s.sealed.digest), "a writer's returned record is not the stored one");
    }
}

#[tokio::test]
async fn values_a_run_cannot_judge_are_kept_counted_and_keep_the_policy_from_compliant() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = support::kube_client().await;
    support::install_crds(&client).await;
    let ns = support::fresh_namespace(&client, "unjudged").await;
    let url = support::setting("POSTGRES_URL", "PostgreSQL");
    let parsed = url::Url::parse(&url).unwrap();
    let mut conn = support::reach(PgConnection::connect(&url).await, "PostgreSQL");
    let table = support::unique("contracts").replace('-', "_");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {table} (id bigint PRIMARY KEY, ended_at timestamptz);
         INSERT INTO {table} VALUES (1, now() - interval '3 days'), (2, '-infinity'), (3, NULL);"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    secrets
        .create(
            &PostParams::default(),
            &manifest(serde_json::json!({"metadata": {"name": "crm-db"},
                "stringData": {"username": parsed.username(), "password": parsed.password().unwrap()}})),
        )
        .await
        .unwrap();
    let stores: Api<DataStore> = Api::namespaced(client.clone(), &ns);
    stores.create(&PostParams::default(), &postgres_datastore("crm", "crm-db")).await.unwrap();
    let policies: Api<RetentionPolicy> = Api::namespaced(client.clone(), &ns);
    let policy = |name: &str, table_spec: serde_json::Value| -> RetentionPolicy {
        manifest(serde_json::json!({
            "apiVersion": "delenda.dev/v1alpha1", "kind": "RetentionPolicy",
            "metadata": {"name": name, "annotations": {"delenda.dev/run-now": "t1"}},
            "spec": {"category": "contracts", "description": "Contracts, until end of service",
                "responsibleParty": "self", "legalBasis": "Contract", "retention": {"period": "1d"},
                "schedule": {"cron": "0 3 1 1 *", "timeZone": "Europe/Amsterdam"}, "mode": "Enforce",
                "targets": [{"name": "contracts", "dataStoreRef": {"name": "crm"}, "table": table_spec}]}
        }))
    };
    policies
        .create(
            &PostParams::default(),
            &policy("contracts", serde_json::json!({"name": table, "timeColumn": "ended_at"})),
        )
        .await
        .unwrap();
    policies
        .create(
            &PostParams::default(),
            &policy(
                "atlantis",
                serde_json::json!({"name": table, "timeColumn": "ended_at", "timeZone": "Europe/Atlantis"}),
            ),
        )
        .await
        .unwrap();

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let operator = tokio::spawn(delenda::controller::run(client.clone(), settings(&ns, None), async move {
        let _ = stopped.await;
    }));
    let status = eventually("the run to finish", 90, async || {
        let status = policies.get("contracts").await.ok()?.status?;
        status.last_run.is_some().then_some(status)
    })
    .await;
    let run = status.last_run.unwrap();
    let records = &run.targets[0].records;
    assert_eq!((records.deleted, records.remaining, records.not_due), (1, Some(0), Some(1)), "{records:?}");
    assert_eq!(records.unreadable.len(), 1, "{records:?}");
    assert_eq!(records.unreadable[0].reason, delenda::api::account::UnreadableReason::InfiniteTime);
    let compliant = status.conditions.iter().find(|c| c.type_ == "Compliant").unwrap();
    assert_eq!((compliant.status.as_str(), compliant.reason.as_str()), ("False", "UnreadableRecords"), "{compliant:?}");
    assert!(compliant.message.contains("1 InfiniteTime"), "{compliant:?}");
    let left: Vec<(i64,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT id FROM {table} ORDER BY id")))
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, vec![(2,), (3,)]);

    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    eventually("a Warning Event for the unjudged records", 30, async || {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("UnreadableRecords") && e.type_.as_deref() == Some("Warning"))
            .then_some(())
    })
    .await;

    // A target's time zone the operator does not know is reported before any run.
    let valid = eventually("the unknown zone to be reported", 30, async || {
        let status = policies.get("atlantis").await.ok()?.status?;
        status.conditions.into_iter().find(|c| c.type_ == "Valid")
    })
    .await;
    assert_eq!((valid.status.as_str(), valid.reason.as_str()), ("False", "InvalidTimeZone"), "{valid:?}");
    assert!(valid.message.contains("Europe/Atlantis"), "{valid:?}");
    assert!(policies.get("atlantis").await.unwrap().status.unwrap().last_run.is_none());

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), operator).await.expect("the operator shuts down").unwrap();
}

/// Starts the operator and tells it to stop once `told` resolves; fails
/// unless it has stopped 10 s later.
async fn stops_when_told(
    client: &kube::Client,
    settings: delenda::controller::Settings,
    told: impl Future<Output = ()>,
    what: &str,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(delenda::controller::run(client.clone(), settings, async move {
        let _ = stopped.await;
    }));
    told.await;
    let _ = stop.send(());
    let lost = tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .unwrap_or_else(|_| panic!("{what}: still running 10 s after it was told to stop"));
    assert!(!lost.unwrap(), "{what}: a stop is not a lost lease");
}

/// An operator told to stop as it starts (a rollout, a pod evicted at
/// once, an API server slow to answer the first lists) stops. Before, a
/// controller stopped before its first list arrived waited for that list
/// forever, and so did the process.
#[tokio::test]
async fn an_operator_told_to_stop_as_it_starts_stops() {
    let client = support::kube_client().await;
    support::install_crds(&client).await;
    let ns = support::fresh_namespace(&client, "stop-at-start").await;
    for after in [0, 1, 2, 5, 10, 20, 50] {
        let alone = delenda::controller::Settings { lease_namespace: None, ..settings(&ns, None) };
        stops_when_told(
            &client,
            alone,
            tokio::time::sleep(Duration::from_millis(after)),
            &format!("stopped {after} ms after its start"),
        )
        .await;
    }
    // Elected, and told to stop the moment the lease is seen held.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client.clone(), &ns);
    let held = async {
        eventually("the lease held", 30, async || {
            let lease = leases.get_opt(delenda::controller::LEASE).await.ok()??;
            lease.spec?.holder_identity.filter(|h| h == &format!("test-{ns}"))
        })
        .await;
    };
    stops_when_told(&client, settings(&ns, None), held, "stopped as it was elected").await;
    let lease = leases.get(delenda::controller::LEASE).await.unwrap();
    assert_eq!(lease.spec.unwrap().holder_identity, None, "the lease is given back");
}
