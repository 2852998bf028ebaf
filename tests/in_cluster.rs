//! The operator as a platform engineer runs it: the image the Dockerfile
//! builds, on a real node (kubelet, containerd, runc), installed by `helm
//! install` of charts/delenda, under the chart's ServiceAccount, RBAC,
//! securityContext and probes. It enforces examples/mvs-it/ as it stands
//! (only endpoints and credentials substituted) against the test
//! environment's stores: all 14 rows and the example ErasureRequest,
//! checked row by row and store by store. Its RBAC is proven at run time,
//! `helm upgrade` and `helm uninstall` keep CRDs and evidence, and a
//! second replica takes over when the leader's pod is deleted.
//!
//! Needs `tests/env/up` (with `node` and `image`): docs/testing.md.
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use aws_sdk_s3::primitives::ByteStream;
use delenda::api::erasure::ErasurePhase;
use delenda::api::{DataStore, ErasureRequest, RetentionPolicy};
use jiff::{Timestamp, ToSpan, tz::TimeZone};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::{Connection, MySqlConnection, PgConnection};
use support::node::{Release, kubectl, ready};
use support::{eventually, manifest};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/mvs-it");
/// The subject of examples/mvs-it/erasure-request.yaml, as its comment creates the Secret.
const EMAIL: &str = "j.de.vries@example.nl";
const PHONE: &str = "+31600000000";
const CUSTOMER: &str = "C-000123";
const BUCKET: &str = "call-recordings";

fn yaml_docs(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(Path::new(EXAMPLE).join(path)).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn apply(ns: &str, docs: &[Value]) {
    let text: String = docs.iter().map(|d| format!("---\n{}", serde_yaml::to_string(d).unwrap())).collect();
    kubectl(&["apply", "--server-side", "--field-manager", "platform-engineer", "-n", ns, "-f", "-"], Some(&text))
        .unwrap_or_else(|e| panic!("kubectl apply into {ns}: {e}"));
}

/// The stores of examples/mvs-it/datastores.yaml, made on the test servers
/// under the names the manifests use: databases made fresh for the run
/// (`crm_*`, `billing_*`), the bucket `call-recordings`, the indices
/// `traffic-*` and a directory for `/data/web-analytics`.
struct Stores {
    crm: String,
    billing: String,
    files: std::path::PathBuf,
    now: Timestamp,
}

fn ago(now: Timestamp, days: i64) -> Timestamp {
    now - (days * 24).hours()
}

fn amsterdam(t: Timestamp) -> String {
    t.to_zoned(TimeZone::get("Europe/Amsterdam").unwrap()).strftime("%Y-%m-%d %H:%M:%S").to_string()
}

/// Tables of "until end of service" rows: 15 running contracts, one that
/// ended 10 days ago (due), and the subject's organisation, whose contract
/// ended 3 hours ago (not due yet: the erasure request removes it).
const END_OF_SERVICE: &[(&str, &str, &str)] = &[
    // (table, extra columns, the subject row's values for them)
    ("contact_persons", "name text, email text, phone text", "'J. de Vries', 'j.de.vries@example.nl', '+31600000000'"),
    ("delivery_addresses", "street text, city text", "'Voorbeeldstraat 1', 'Utrecht'"),
    ("billing_accounts", "company_name text", "'Bakkerij Voorbeeld B.V.'"),
    ("internet_connections", "service_id text, line_id text, public_ip text", "'SVC-1', 'LINE-1', '198.51.100.23'"),
    ("voip_handsets", "ip_address text, mac_address text", "'198.51.100.24', '00:1a:2b:3c:4d:5e'"),
    ("voip_phonebook_entries", "contact_name text, contact_phone text", "'Bakker', '+31600000000'"),
    ("sim_cards", "iccid text, imei text, msisdn text", "'8931000000000000001', '490154203237518', '+31600000000'"),
    (
        "alarm_key_holders",
        "name text, email text, phone text",
        "'J. de Vries', 'j.de.vries@example.nl', '+31600000000'",
    ),
];

impl Stores {
    async fn make(ns: &str) -> Self {
        let now = Timestamp::now();
        let id = ns.replace('-', "_");
        let crm = format!("crm_{id}");
        let billing = format!("billing_{id}");

        // CRM in PostgreSQL.
        let pg_url = support::setting("POSTGRES_URL", "PostgreSQL");
        let mut pg = support::reach(PgConnection::connect(&pg_url).await, "PostgreSQL");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {crm}"))).execute(&mut pg).await.unwrap();
        let mut url = url::Url::parse(&pg_url).unwrap();
        url.set_path(&crm);
        let mut db = PgConnection::connect(url.as_str()).await.unwrap();
        let mut sql = String::new();
        for (table, columns, subject) in END_OF_SERVICE {
            sql.push_str(&format!(
                "CREATE TABLE {table} (id bigint PRIMARY KEY, customer_id text NOT NULL, {columns}, service_ended_at timestamptz);
                 INSERT INTO {table} (id, customer_id, service_ended_at) SELECT g, 'C-' || (900 + g), NULL FROM generate_series(1, 15) g;
                 INSERT INTO {table} (id, customer_id, service_ended_at) VALUES (100, 'C-000900', now() - interval '10 days');
                 INSERT INTO {table} VALUES (101, '{CUSTOMER}', {subject}, now() - interval '3 hours');\n"
            ));
        }
        // A near miss: another customer whose id holds the subject's.
        sql.push_str("INSERT INTO contact_persons VALUES (102, 'C-0001230', 'Other', 'other.j.de.vries@example.nl', '+31600000001', NULL);\n");
        sql.push_str(&format!(
            "CREATE TABLE mobile_notifications (id bigint PRIMARY KEY, customer_id text NOT NULL, msisdn text, kind text, body text, service_ended_at timestamptz);
             INSERT INTO mobile_notifications SELECT g, 'C-' || (900 + g), '+3120000' || lpad(g::text, 4, '0'), 'bundle', 'b', NULL FROM generate_series(1, 15) g;
             INSERT INTO mobile_notifications VALUES
               (100, 'C-000900', '+31200009000', 'border-crossing', 'welcome abroad', now() - interval '10 days'),
               (102, 'C-000900', '+31200009000', 'invoice-ready', 'not this row', now() - interval '10 days'),
               (101, '{CUSTOMER}', '{PHONE}', 'bundle', '90% used', now() - interval '3 hours'),
               (103, '{CUSTOMER}', '{PHONE}', 'service-message', 'not this row', now() - interval '3 hours');
             CREATE TABLE support_tickets (id bigint PRIMARY KEY, customer_id text, requester_email text, requester_phone text, subject text, closed_at timestamptz);
             CREATE TABLE support_ticket_messages (id bigint PRIMARY KEY, ticket_id bigint NOT NULL REFERENCES support_tickets (id), body text);
             CREATE TABLE support_ticket_attachments (id bigint PRIMARY KEY, ticket_id bigint NOT NULL REFERENCES support_tickets (id), file_name text);
             INSERT INTO support_tickets SELECT g, 'C-' || (900 + g), 'user' || g || '@example.com', NULL, 'help',
               CASE WHEN g % 4 = 0 THEN NULL ELSE now() - g * interval '10 days' END FROM generate_series(1, 79) g;
             INSERT INTO support_tickets VALUES
               (100, 'C-000900', 'old@example.com', NULL, 'old', now() - interval '4 years'),
               (101, '{CUSTOMER}', '{EMAIL}', '{PHONE}', 'router', now() - interval '1 year');
             INSERT INTO support_ticket_messages VALUES (1000, 100, 'old'), (1001, 101, 'my router'), (1, 1, 'keep');
             INSERT INTO support_ticket_attachments VALUES (1000, 100, 'old.png'), (1, 1, 'keep.png');
             CREATE TABLE contact_form_submissions (id bigint PRIMARY KEY, name text, email text, phone text, message text, submitted_at timestamptz);
             INSERT INTO contact_form_submissions SELECT g, 'n', 'visitor' || g || '@example.com', NULL, 'hi', now() - g * interval '9 days' FROM generate_series(1, 30) g;
             INSERT INTO contact_form_submissions VALUES
               (100, 'n', 'old@example.com', NULL, 'old', now() - interval '400 days'),
               (101, 'J. de Vries', '{EMAIL}', NULL, 'call me', now() - interval '60 days');"
        ));
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut db).await.unwrap();

        // Billing in MariaDB: Amsterdam wall-clock times, as the DataStore says.
        let my_url = support::setting("MYSQL_URL", "MariaDB");
        let mut my = support::reach(MySqlConnection::connect(&my_url).await, "MariaDB");
        let mut cdrs = String::new();
        for g in 1..=40 {
            cdrs.push_str(&format!(
                "({g}, 'C-{}', '+3120000{g:04}', '+3130000{g:04}', '{}', 60),",
                900 + g,
                amsterdam(ago(now, 2 * g))
            ));
        }
        cdrs.push_str(&format!(
            "(100, 'C-000900', '+31200009000', '+31300009000', '{}', 60), (101, '{CUSTOMER}', '{PHONE}', '+31300000001', '{}', 60), (102, 'C-000777', '+31300000002', '{PHONE}', '{}', 60)",
            amsterdam(ago(now, 200)),
            amsterdam(ago(now, 30)),
            amsterdam(ago(now, 10))
        ));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {billing};
             CREATE TABLE {billing}.call_detail_records (cdr_id BIGINT PRIMARY KEY, customer_id VARCHAR(32), calling_number VARCHAR(32),
               called_number VARCHAR(32), started_at DATETIME, duration_seconds INT);
             INSERT INTO {billing}.call_detail_records VALUES {cdrs};"
        )))
        .execute(&mut my)
        .await
        .unwrap();

        // Call recordings: support calls by the date in the key, the
        // customers' own recordings by their tag (DryRun).
        let s3 = support::s3::store();
        let c = s3.client();
        if c.head_bucket().bucket(BUCKET).send().await.is_err() {
            support::reach(c.create_bucket().bucket(BUCKET).send().await, "the S3 server");
        }
        let listed = c.list_objects_v2().bucket(BUCKET).send().await.unwrap();
        for o in listed.contents() {
            c.delete_object().bucket(BUCKET).key(o.key().unwrap()).send().await.unwrap();
        }
        let day = |d: i64| ago(now, d).strftime("%Y/%m/%d").to_string();
        let mut objects: Vec<(String, Option<&str>, Option<String>)> = (1..=20)
            .map(|n| {
                (
                    format!("support/{}/call-{n}.opus", day(n)),
                    Some("+31200000000"),
                    Some(format!("customer-id=C-{}", 900 + n)),
                )
            })
            .collect();
        objects.push((format!("support/{}/call-old.opus", day(120)), Some("+31200000000"), None));
        objects.push((
            format!("support/{}/call-subject.opus", day(20)),
            Some(PHONE),
            Some(format!("customer-id={CUSTOMER}")),
        ));
        objects.push((format!("customers/{CUSTOMER}/2026-11-01-call.opus"), None, Some("retention-period=30d".into())));
        objects.push(("customers/C-000124/2026-11-01-call.opus".into(), None, None));
        objects.push(("customers/C-0001230/2026-11-01-call.opus".into(), None, None));
        objects.push(("customers/C-000125/2026-11-01-call.opus".into(), None, Some("retention-period=forever".into())));
        for (key, caller, tags) in objects {
            let mut put = c.put_object().bucket(BUCKET).key(&key).body(ByteStream::from(key.clone().into_bytes()));
            if let Some(caller) = caller {
                put = put.metadata("caller-number", caller);
            }
            if let Some(tags) = tags {
                put = put.tagging(tags);
            }
            put.send().await.unwrap_or_else(|e| panic!("put {key}: {e:?}"));
        }

        // Traffic data in OpenSearch: a daily mail index wholly past six
        // months (dropped whole), and indices that keep recent traffic.
        use support::search::call;
        let _ = support::search::try_call(Method::DELETE, "traffic-mail-*,traffic-voice-*,traffic-net-*", None).await;
        let mapping = json!({"properties": {"@timestamp": {"type": "date"},
            "email": {"properties": {"from": {"properties": {"address": {"type": "keyword"}}}, "to": {"properties": {"address": {"type": "keyword"}}}}},
            "call": {"properties": {"calling_number": {"type": "keyword"}, "called_number": {"type": "keyword"}}},
            "source": {"properties": {"ip": {"type": "ip"}}}}});
        let old_mail = format!("traffic-mail-{}", ago(now, 213).strftime("%Y.%m.%d"));
        let indices = [old_mail.as_str(), "traffic-mail-recent", "traffic-voice-recent", "traffic-net-recent"];
        for index in indices {
            call(
                Method::PUT,
                index,
                Some(json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0}, "mappings": mapping})),
            )
            .await;
        }
        let mut bulk = String::new();
        let mut doc = |index: &str, id: String, body: Value| {
            bulk.push_str(&format!("{}\n{}\n", json!({"index": {"_index": index, "_id": id}}), body));
        };
        let t = |d: i64| ago(now, d).to_string();
        doc(
            &old_mail,
            "old".into(),
            json!({"@timestamp": t(213), "email": {"from": {"address": "old@example.com"}}, "source": {"ip": "198.51.100.1"}}),
        );
        doc(
            "traffic-voice-recent",
            "old".into(),
            json!({"@timestamp": t(200), "call": {"calling_number": "+31200009000", "called_number": "+31300009000"}}),
        );
        doc("traffic-net-recent", "old".into(), json!({"@timestamp": t(200), "source": {"ip": "198.51.100.2"}}));
        for n in 1..=20 {
            doc(
                "traffic-mail-recent",
                format!("m{n}"),
                json!({"@timestamp": t(n), "email": {"from": {"address": format!("user{n}@example.com")}, "to": {"address": "desk@example.com"}}}),
            );
            doc(
                "traffic-voice-recent",
                format!("v{n}"),
                json!({"@timestamp": t(n), "call": {"calling_number": format!("+3120000{n:04}"), "called_number": "+31300000000"}}),
            );
            doc(
                "traffic-net-recent",
                format!("n{n}"),
                json!({"@timestamp": t(n), "source": {"ip": format!("198.51.100.{}", 100 + n)}}),
            );
        }
        doc(
            "traffic-mail-recent",
            "subject".into(),
            json!({"@timestamp": t(5), "email": {"from": {"address": EMAIL}, "to": {"address": "desk@example.com"}}}),
        );
        doc(
            "traffic-voice-recent",
            "subject".into(),
            json!({"@timestamp": t(5), "call": {"calling_number": "+31200000077", "called_number": PHONE}}),
        );
        let base = support::search::base();
        let resp = reqwest::Client::new()
            .post(format!("{base}/_bulk?refresh=true"))
            .header("content-type", "application/x-ndjson")
            .body(bulk)
            .send()
            .await
            .unwrap();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["errors"], false, "{body}");

        // Web analytics: daily JSON-lines files, for the operator's user 65532.
        let files = Path::new(&support::setting("DELENDA_TEST_NODE_DATA", support::node::NODE_SCRIPT)).join(ns);
        let date = |d: i64| ago(now, d).strftime("%Y-%m-%d").to_string();
        let line = r#"{"client":{"ip":"198.51.100.7"},"cookie":{"id":"c1"},"device":{"id":"d1"},"path":"/"}"#;
        // Each file was last written on its day (today's an hour ago): the
        // store leaves files alone while they are still being written.
        for (path, lines, written) in [
            (format!("www/visits-{}.jsonl", date(400)), 1, ago(now, 399)),
            (format!("www/visits-{}.jsonl", date(1)), 3, ago(now, 0) - 1.hour()),
            (format!("apps/events-{}.jsonl", date(730)), 1, ago(now, 729)),
            (format!("apps/events-{}.jsonl", date(0)), 3, ago(now, 0) - 1.hour()),
        ] {
            let file = files.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, format!("{line}\n").repeat(lines)).unwrap();
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(written.as_second() as u64);
            std::fs::File::options().write(true).open(&file).unwrap().set_modified(at).unwrap();
        }
        for p in [files.clone(), files.join("www"), files.join("apps")] {
            std::os::unix::fs::chown(&p, Some(65532), Some(65532)).unwrap();
            for f in std::fs::read_dir(&p).unwrap() {
                std::os::unix::fs::chown(f.unwrap().path(), Some(65532), Some(65532)).unwrap();
            }
        }
        Stores { crm, billing, files, now }
    }

    /// examples/mvs-it/datastores.yaml and secrets.yaml with the test
    /// servers' endpoints and credentials, nothing else changed. The test
    /// servers speak plain TCP on 127.0.0.1, so `tls: Require` becomes
    /// `Disable`: part of the endpoint.
    fn datastores_and_secrets(&self) -> Vec<Value> {
        let pg = url::Url::parse(&support::setting("POSTGRES_URL", "PostgreSQL")).unwrap();
        let my = url::Url::parse(&support::setting("MYSQL_URL", "MariaDB")).unwrap();
        let mut docs = yaml_docs("datastores.yaml");
        for d in &mut docs {
            let name = d["metadata"]["name"].as_str().unwrap().to_owned();
            let spec = &mut d["spec"];
            match name.as_str() {
                "crm" => {
                    let p = &mut spec["postgres"];
                    (p["host"], p["port"], p["database"], p["tls"]) =
                        (json!("127.0.0.1"), json!(pg.port().unwrap()), json!(self.crm), json!("Disable"));
                }
                "billing" => {
                    let m = &mut spec["mysql"];
                    (m["host"], m["port"], m["database"], m["tls"]) =
                        (json!("127.0.0.1"), json!(my.port().unwrap()), json!(self.billing), json!("Disable"));
                }
                "call-recordings" => spec["s3"]["endpoint"] = json!(support::setting("S3_ENDPOINT", "the S3 server")),
                "traffic-logs" => spec["opensearch"]["url"] = json!(support::search::base()),
                "web-analytics" => {
                    assert_eq!(spec["files"]["root"], "/data/web-analytics", "mounted there by the chart")
                }
                other => panic!("a DataStore this test does not know: {other}"),
            }
        }
        let mut secrets = yaml_docs("secrets.yaml");
        for s in &mut secrets {
            let name = s["metadata"]["name"].as_str().unwrap().to_owned();
            let data = &mut s["stringData"];
            match name.as_str() {
                "crm-credentials" => {
                    (data["username"], data["password"]) = (json!(pg.username()), json!(pg.password()))
                }
                "billing-credentials" => {
                    (data["username"], data["password"]) = (json!(my.username()), json!(my.password()))
                }
                "call-recordings-credentials" => {
                    data["accessKeyId"] = json!(support::setting("S3_ACCESS_KEY_ID", "the S3 server"));
                    data["secretAccessKey"] = json!(support::setting("S3_SECRET_ACCESS_KEY", "the S3 server"));
                }
                // The test OpenSearch has no security plugin: it ignores them.
                "traffic-logs-credentials" => {}
                other => panic!("a Secret this test does not know: {other}"),
            }
        }
        secrets.extend(docs);
        secrets
    }

    async fn pg_ids(&self, table: &str) -> Vec<i64> {
        let mut url = url::Url::parse(&support::setting("POSTGRES_URL", "PostgreSQL")).unwrap();
        url.set_path(&self.crm);
        let mut db = PgConnection::connect(url.as_str()).await.unwrap();
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT id FROM {table} ORDER BY id")))
            .fetch_all(&mut db)
            .await
            .unwrap()
    }

    async fn drop(&self) {
        let mut pg = PgConnection::connect(&support::setting("POSTGRES_URL", "PostgreSQL")).await.unwrap();
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE {} WITH (FORCE)", self.crm)))
            .execute(&mut pg)
            .await;
        let mut my = MySqlConnection::connect(&support::setting("MYSQL_URL", "MariaDB")).await.unwrap();
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE {}", self.billing))).execute(&mut my).await;
    }
}

fn range(from: i64, to: i64) -> Vec<i64> {
    (from..=to).collect()
}

/// Every (policy, target) of the table and how many records its first run
/// deletes: one due record or file each (the DryRun row 11 deletes none).
const RETENTION: &[(&str, &str, u64)] = &[
    ("contact-persons", "contact-persons", 1),
    ("delivery-addresses", "delivery-addresses", 1),
    ("invoice-company-names", "billing-accounts", 1),
    ("traffic-data", "mail", 1),
    ("traffic-data", "voice", 1),
    ("traffic-data", "internet", 1),
    ("support-tickets", "support-tickets", 1),
    ("support-call-recordings", "support-recordings", 1),
    ("internet-connections", "internet-connections", 1),
    ("voip-handsets", "handsets", 1),
    ("voip-handsets", "phone-book", 1),
    ("mobile-subscriptions", "sim-cards", 1),
    ("mobile-subscriptions", "notifications", 1),
    ("usage-data", "call-detail-records", 1),
    ("customer-call-recordings", "customer-recordings", 0),
    ("alarm-key-holders", "key-holders", 1),
    ("web-statistics", "website", 1),
    ("web-statistics", "apps", 1),
    ("contact-form", "contact-form-submissions", 1),
];

/// Every (policy, target) and what the example ErasureRequest comes to
/// there: (outcome, records erased or, for Retained, matched). Each target
/// finds one of the subject's records (CDRs: one call each way).
const ERASURE: &[(&str, &str, &str, i64)] = &[
    ("contact-persons", "contact-persons", "Erased", 1),
    ("delivery-addresses", "delivery-addresses", "Erased", 1),
    ("invoice-company-names", "billing-accounts", "Erased", 1),
    // Row 4 is kept under a legal obligation (Art. 17(3)(b)).
    ("traffic-data", "mail", "Retained", 1),
    ("traffic-data", "voice", "Retained", 1),
    // Only IP addresses identify records there; the request names none.
    ("traffic-data", "internet", "NotSearched", 0),
    // The ticket, and its message first (children count as erased).
    ("support-tickets", "support-tickets", "Erased", 2),
    ("support-call-recordings", "support-recordings", "Erased", 1),
    ("internet-connections", "internet-connections", "Erased", 1),
    ("voip-handsets", "handsets", "Erased", 1),
    ("voip-handsets", "phone-book", "Erased", 1),
    ("mobile-subscriptions", "sim-cards", "Erased", 1),
    ("mobile-subscriptions", "notifications", "Erased", 1),
    ("usage-data", "call-detail-records", "Erased", 2),
    ("customer-call-recordings", "customer-recordings", "Erased", 1),
    ("alarm-key-holders", "key-holders", "Erased", 1),
    ("web-statistics", "website", "NotSearched", 0),
    ("web-statistics", "apps", "NotSearched", 0),
    ("contact-form", "contact-form-submissions", "Erased", 1),
];

/// A release of its own (cluster-scoped names differ per release), after
/// uninstalling what an earlier failed run of the same test left: its pods
/// would hold the host port.
async fn new_release(client: &Client, prefix: &str, port: u16) -> Release {
    support::install_crds(client).await;
    let listed = support::node::helm(&["list", "--all-namespaces", "-o", "json"]).unwrap();
    for old in serde_json::from_str::<Vec<Value>>(&listed).unwrap() {
        let (name, ns) = (old["name"].as_str().unwrap(), old["namespace"].as_str().unwrap());
        if name.starts_with(&format!("{prefix}-")) {
            let _ = support::node::helm(&["uninstall", name, "-n", ns, "--wait", "--timeout", "2m"]);
        }
    }
    let namespace = support::fresh_namespace(client, prefix).await;
    let watched = support::fresh_namespace(client, &format!("{prefix}-apps")).await;
    // The installation key, as docs/deploy.md has users make it.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let key: String = (0..32).map(|i| format!("{:02x}", (i * 37 + port as usize) % 256)).collect();
    secrets
        .create(
            &PostParams::default(),
            &manifest(json!({"metadata": {"name": "delenda-installation-key"}, "stringData": {"key": key}})),
        )
        .await
        .unwrap();
    Release { name: support::unique(prefix), namespace, watched, port }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_runs_the_operator_as_a_pod_that_enforces_the_mvs_it_table() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = support::kube_client().await;
    let release = new_release(&client, "mvs-it", 18080).await;
    let ns = release.watched.clone();
    let stores = Stores::make(&ns).await;

    // helm install, with the web-analytics directory mounted where the
    // DataStore says, below the one directory local stores may reach.
    let values = release.values(json!({
        "allowedRoots": ["/data"],
        "extraVolumes": [{"name": "web-analytics", "hostPath": {"path": stores.files, "type": "Directory"}}],
        "extraVolumeMounts": [{"name": "web-analytics", "mountPath": "/data/web-analytics"}]
    }));
    release.helm_with(&["install"], &values, true).unwrap_or_else(|e| panic!("helm install: {e}"));
    let pod = release.pods(&client).await.into_iter().next().expect("a pod");
    let pod_name = pod.metadata.name.clone().unwrap();
    assert!(ready(&pod), "{:?}", pod.status);
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.service_account_name.as_deref(), Some(release.fullname().as_str()), "the chart's ServiceAccount");
    assert_eq!(spec.security_context.as_ref().unwrap().run_as_user, Some(65532));
    let (repository, tag, digest) = support::node::image();
    assert_eq!(spec.containers[0].image.as_deref(), Some(format!("{repository}:{tag}@{digest}").as_str()));
    let leader = eventually("the pod to be elected", 60, async || release.leader(&client).await).await;
    assert_eq!(leader, pod_name, "the one pod leads");

    // The platform engineer applies the statement, then runs every row now.
    apply(&ns, &stores.datastores_and_secrets());
    kubectl(
        &[
            "apply",
            "--server-side",
            "--field-manager",
            "platform-engineer",
            "-n",
            &ns,
            "-f",
            &format!("{EXAMPLE}/policies.yaml"),
        ],
        None,
    )
    .unwrap();
    let datastores: Api<DataStore> = Api::namespaced(client.clone(), &ns);
    for name in ["crm", "billing", "call-recordings", "traffic-logs", "web-analytics"] {
        eventually(&format!("DataStore {name} to be Ready"), 120, async || {
            let ready = datastores.get(name).await.ok()?.status?.conditions.into_iter().find(|c| c.type_ == "Ready")?;
            (ready.status == "True").then_some(())
        })
        .await;
    }
    kubectl(
        &["annotate", "-n", &ns, "retentionpolicies", "--all", "--overwrite", "delenda.dev/run-now=in-cluster"],
        None,
    )
    .unwrap();

    let policies: Api<RetentionPolicy> = Api::namespaced(client.clone(), &ns);
    let listed = policies.list(&ListParams::default().labels("delenda.dev/statement=mvs-it")).await.unwrap();
    let rows: BTreeSet<String> =
        listed.items.iter().map(|p| p.metadata.labels.as_ref().unwrap()["delenda.dev/row"].clone()).collect();
    assert_eq!(rows.len(), 14, "all 14 rows of the table: {rows:?}");
    for (policy, target, deleted) in RETENTION {
        let status = eventually(&format!("{policy} to run"), 300, async || {
            let status = policies.get(policy).await.ok()?.status?;
            status.last_run.as_ref()?.finished_at.is_some().then_some(status)
        })
        .await;
        let run = status.last_run.as_ref().unwrap();
        let t = run
            .targets
            .iter()
            .find(|t| t.name == *target)
            .unwrap_or_else(|| panic!("{policy}/{target} in {:?}", run.targets));
        assert_eq!(run.outcome.as_deref(), Some("Succeeded"), "{policy}: {:?}", run.targets);
        assert_eq!(t.records.deleted, *deleted, "{policy}/{target}: {:?}", t.records);
        assert_eq!(t.records.remaining, Some(0), "{policy}/{target}: {:?}", t.records);
        let compliant = status.conditions.iter().find(|c| c.type_ == "Compliant").expect("a Compliant condition");
        if *policy == "customer-call-recordings" {
            // DryRun, and one recording's tag is not a period: kept and reported.
            assert_ne!(compliant.status, "True", "{compliant:?}");
            assert_eq!(t.records.unreadable.iter().map(|u| u.count).sum::<u64>(), 1, "{:?}", t.records);
        } else {
            assert_eq!(compliant.status, "True", "{policy}: {compliant:?}");
        }
    }
    let support = policies.get("support-tickets").await.unwrap().status.unwrap().last_run.unwrap();
    assert_eq!(support.targets[0].records.related_deleted, 2, "the old ticket's message and attachment");

    // The privacy office creates the identity Secret in the cluster, as
    // the example's comment says (never from Git), and files the request
    // as it stands.
    let env_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(env_file.path(), format!("email={EMAIL}\nphone={PHONE}\ncustomerId={CUSTOMER}\n")).unwrap();
    let env_path = env_file.path().to_str().unwrap();
    let secret = kubectl(
        &["create", "secret", "generic", "erasure-2026-0042-identities", "--from-env-file", env_path]
            .into_iter()
            .chain(["--dry-run=client", "-o", "yaml"])
            .collect::<Vec<_>>(),
        None,
    )
    .unwrap();
    let labels = ["delenda.dev/identity=true", "delenda.dev/statement=mvs-it"];
    let args: Vec<&str> = ["label", "--local", "-f", "-", "-o", "yaml"].into_iter().chain(labels).collect();
    let secret = kubectl(&args, Some(&secret)).unwrap();
    kubectl(&["create", "-n", &ns, "-f", "-"], Some(&secret)).unwrap();
    apply(&ns, &yaml_docs("erasure-request.yaml"));
    let requests: Api<ErasureRequest> = Api::namespaced(client.clone(), &ns);
    let status = eventually("the erasure request to complete", 300, async || {
        let status = requests.get("erasure-2026-0042").await.ok()?.status?;
        (status.phase == Some(ErasurePhase::Completed)).then_some(status)
    })
    .await;
    let outcomes: BTreeMap<(String, String), _> =
        status.targets.iter().map(|t| ((t.policy.clone(), t.target.clone()), t.clone())).collect();
    assert_eq!(outcomes.len(), ERASURE.len(), "every target of every row is listed: {:?}", outcomes.keys());
    for (policy, target, outcome, count) in ERASURE {
        let t = &outcomes[&(policy.to_string(), target.to_string())];
        assert_eq!(t.outcome, *outcome, "{policy}/{target}: {t:?}");
        let n = if *outcome == "Retained" { t.matched } else { t.erased };
        assert_eq!(n, *count, "{policy}/{target}: {t:?}");
        if *outcome == "Retained" {
            assert!(t.retained_until.as_ref().unwrap().0 > stores.now + (170 * 24).hours(), "{t:?}");
        }
        if *outcome == "Erased" {
            assert_eq!(t.remaining, Some(0), "{policy}/{target}: {t:?}");
        }
    }
    assert_eq!(status.subject_digests.len(), 3, "email, phone and customerId, as digests");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    eventually("the identity Secret to be deleted (deleteIdentitySecret)", 60, async || {
        secrets.get_opt("erasure-2026-0042-identities").await.ok()?.is_none().then_some(())
    })
    .await;

    // What is left, store by store, row by row.
    for (table, ..) in END_OF_SERVICE {
        let expected = if *table == "contact_persons" { [range(1, 15), vec![102]].concat() } else { range(1, 15) };
        assert_eq!(stores.pg_ids(table).await, expected, "{table}: ended 10 days ago and the subject's are gone");
    }
    assert_eq!(
        stores.pg_ids("mobile_notifications").await,
        [range(1, 15), vec![102, 103]].concat(),
        "kinds outside row 9 stay"
    );
    assert_eq!(stores.pg_ids("support_tickets").await, range(1, 79));
    assert_eq!(stores.pg_ids("support_ticket_messages").await, [1]);
    assert_eq!(stores.pg_ids("support_ticket_attachments").await, [1]);
    assert_eq!(stores.pg_ids("contact_form_submissions").await, range(1, 30));
    let mut my = MySqlConnection::connect(&support::setting("MYSQL_URL", "MariaDB")).await.unwrap();
    let cdrs: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT cdr_id FROM {}.call_detail_records ORDER BY cdr_id",
        stores.billing
    )))
    .fetch_all(&mut my)
    .await
    .unwrap();
    assert_eq!(cdrs, range(1, 40), "usage past six months and the subject's calls, both ways, are gone");
    let keys = support::s3::keys(&support::s3::store(), BUCKET).await;
    assert_eq!(keys.len(), 20 + 3, "{keys:?}");
    assert!(
        keys.iter()
            .all(|k| !k.contains("call-old") && !k.contains("call-subject") && !k.contains(&format!("/{CUSTOMER}/"))),
        "{keys:?}"
    );
    assert!(
        keys.contains("customers/C-0001230/2026-11-01-call.opus"),
        "a customer id that holds the subject's is another customer"
    );
    let docs = support::search::snapshot("traffic-mail-*,traffic-voice-*,traffic-net-*").await;
    let ids: BTreeSet<String> = docs.iter().map(|(index, id)| format!("{index}/{id}")).collect();
    assert_eq!(ids.len(), 62, "{ids:?}");
    assert!(ids.contains("traffic-mail-recent/subject") && ids.contains("traffic-voice-recent/subject"), "retained");
    assert!(!ids.iter().any(|i| i.ends_with("/old")), "traffic past six months is gone: {ids:?}");
    assert!(
        !support::search::exists(&format!("traffic-mail-{}", ago(stores.now, 213).strftime("%Y.%m.%d"))).await,
        "dropped whole"
    );
    let mut files = BTreeSet::new();
    for dir in ["www", "apps"] {
        for f in std::fs::read_dir(stores.files.join(dir)).unwrap() {
            files.insert(format!("{dir}/{}", f.unwrap().file_name().to_string_lossy()));
        }
    }
    let date = |d: i64| ago(stores.now, d).strftime("%Y-%m-%d").to_string();
    assert_eq!(
        files,
        BTreeSet::from([format!("www/visits-{}.jsonl", date(1)), format!("apps/events-{}.jsonl", date(0))])
    );

    // Every call the pod made was allowed by the chart's RBAC.
    let logs = release.logs(&pod_name);
    assert!(!logs.to_lowercase().contains("forbidden"), "the operator was refused something:\n{logs}");
    rbac_outside_the_chart_is_forbidden(&client, &release).await;

    upgrade_and_uninstall_keep_crds_and_evidence(&client, &release, values).await;
    stores.drop().await;
}

/// With one namespace watched, the ServiceAccount the pods run as (its
/// token from the TokenRequest API, as the kubelet gets it) reads Secrets
/// there and nowhere else.
async fn rbac_outside_the_chart_is_forbidden(client: &Client, release: &Release) {
    let other = support::fresh_namespace(client, "not-watched").await;
    for ns in [&release.watched, &other] {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
        secrets
            .create(
                &PostParams::default(),
                &manifest(json!({"metadata": {"name": "payroll-db"}, "stringData": {"password": "x"}})),
            )
            .await
            .unwrap();
    }
    let token = kubectl(&["create", "token", &release.fullname(), "-n", &release.namespace, "--duration", "10m"], None)
        .unwrap();
    let ca = Path::new(&support::setting("KUBECONFIG", "kube-apiserver")).parent().unwrap().join("pki/ca.crt");
    let api = support::node::api_server();
    let as_operator = |args: &[&str]| -> Result<String, String> {
        let mut all = vec!["--kubeconfig", "/dev/null", "--server", api.as_str(), "--token", token.trim()];
        let ca = format!("--certificate-authority={}", ca.display());
        all.push(&ca);
        all.extend(args);
        let out = std::process::Command::new("kubectl").args(&all).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if out.status.success() { Ok(text) } else { Err(text) }
    };
    as_operator(&["get", "secret", "payroll-db", "-n", &release.watched, "-o", "name"])
        .expect("the watched namespace's Secrets are readable");
    as_operator(&["get", "lease", "delenda-controller", "-n", &release.namespace]).expect("its Lease");
    for args in [
        vec!["get", "secret", "payroll-db", "-n", other.as_str()],
        vec!["get", "secrets", "--all-namespaces"],
        vec!["get", "secrets", "-n", release.namespace.as_str()],
        vec!["delete", "configmap", "anything", "-n", release.watched.as_str()],
    ] {
        let err = as_operator(&args).expect_err(&format!("{args:?} must be refused"));
        assert!(err.contains("Forbidden") || err.contains("forbidden"), "{args:?}: {err}");
    }
    // What namespace users get through the aggregated roles.
    let sa = |name: &str| format!("system:serviceaccount:{}:{name}", release.watched);
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &release.watched);
    let filer = format!("{}-erasure-filer", release.fullname());
    for (user, role) in [("platform", "edit"), ("auditor", "view"), ("privacy-office", filer.as_str())] {
        accounts.create(&PostParams::default(), &manifest(json!({"metadata": {"name": user}}))).await.unwrap();
        kubectl(
            &[
                "create",
                "rolebinding",
                user,
                "-n",
                &release.watched,
                "--clusterrole",
                role,
                "--serviceaccount",
                &format!("{}:{user}", release.watched),
            ],
            None,
        )
        .unwrap();
    }
    let can = |user: &str, verb: &str, resource: &str| {
        eventually_blocking(|| {
            kubectl(&["auth", "can-i", verb, resource, "-n", &release.watched, "--as", &sa(user)], None)
                .unwrap_or_else(|e| e)
                .trim()
                == "yes"
        })
    };
    assert!(can("platform", "create", "retentionpolicies.delenda.dev"), "edit manages policies");
    assert!(can("platform", "patch", "datastores.delenda.dev"));
    assert!(can("auditor", "list", "erasurerequests.delenda.dev"), "view reads requests");
    assert!(can("privacy-office", "create", "erasurerequests.delenda.dev"), "the filer files requests");
    assert!(can("privacy-office", "create", "secrets"), "and their identity Secrets");
    for (user, verb, resource) in [
        ("platform", "create", "erasurerequests.delenda.dev"),
        ("auditor", "create", "retentionpolicies.delenda.dev"),
        ("privacy-office", "get", "secrets"),
        ("privacy-office", "delete", "retentionpolicies.delenda.dev"),
    ] {
        let answer = kubectl(&["auth", "can-i", verb, resource, "-n", &release.watched, "--as", &sa(user)], None)
            .unwrap_or_else(|e| e);
        assert_eq!(answer.trim(), "no", "{user} {verb} {resource}");
    }
}

/// The aggregation controller fills the built-in roles shortly after the
/// chart's roles appear: retry a positive answer for a while.
fn eventually_blocking(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..60 {
        if check() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    false
}

/// The evidence chains: every ConfigMap of the watched namespace but the
/// cluster's CA bundle, by name.
async fn evidence(client: &Client, ns: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|c| c.metadata.name.as_deref() != Some("kube-root-ca.crt"))
        .map(|c| (c.metadata.name.unwrap(), c.data.unwrap_or_default()))
        .collect()
}

async fn crd_versions(client: &Client) -> Vec<String> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut v = Vec::new();
    for name in ["datastores.delenda.dev", "retentionpolicies.delenda.dev", "erasurerequests.delenda.dev"] {
        v.push(api.get(name).await.unwrap().metadata.resource_version.unwrap());
    }
    v
}

async fn upgrade_and_uninstall_keep_crds_and_evidence(client: &Client, release: &Release, mut values: Value) {
    let chains = evidence(client, &release.watched).await;
    assert!(chains.len() >= 2, "the runs and the erasure left evidence: {:?}", chains.keys());
    let crds = crd_versions(client).await;
    let policies: Api<RetentionPolicy> = Api::namespaced(client.clone(), &release.watched);
    let digests = |list: Vec<RetentionPolicy>| -> BTreeMap<String, Option<String>> {
        list.into_iter()
            .map(|p| (p.metadata.name.unwrap(), p.status.and_then(|s| s.last_run).and_then(|r| r.digest)))
            .collect()
    };
    let before = digests(policies.list(&ListParams::default()).await.unwrap().items);

    values["logFormat"] = json!("text");
    release.helm_with(&["upgrade"], &values, true).unwrap_or_else(|e| panic!("helm upgrade: {e}"));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &release.namespace);
    let deployment = deployments.get(&release.fullname()).await.unwrap();
    let env = deployment.spec.unwrap().template.spec.unwrap().containers[0].env.clone().unwrap();
    assert!(env.iter().any(|e| e.name == "DELENDA_LOG_FORMAT" && e.value.as_deref() == Some("text")), "{env:?}");
    let pod = eventually("a pod of the upgraded release to lead", 120, async || {
        let pods = release.pods(client).await;
        let newest = pods.into_iter().find(ready)?;
        let name = newest.metadata.name.clone()?;
        (release.leader(client).await? == name).then_some(name)
    })
    .await;
    assert!(!release.logs(&pod).trim_start().starts_with('{'), "text logs after the upgrade");
    assert_eq!(crd_versions(client).await, crds, "helm upgrade leaves the CRDs alone");
    assert_eq!(evidence(client, &release.watched).await, chains, "and the evidence");

    helm_uninstall(release);
    assert!(deployments.get_opt(&release.fullname()).await.unwrap().is_none(), "the Deployment is gone");
    assert_eq!(crd_versions(client).await, crds, "helm uninstall keeps the CRDs");
    assert_eq!(evidence(client, &release.watched).await, chains, "and every evidence chain");
    assert_eq!(
        digests(policies.list(&ListParams::default()).await.unwrap().items),
        before,
        "and the policies with their status"
    );
}

fn helm_uninstall(release: &Release) {
    support::node::helm(&["uninstall", &release.name, "-n", &release.namespace, "--wait", "--timeout", "2m"])
        .unwrap_or_else(|e| panic!("helm uninstall: {e}"));
}

/// Two replicas: only the Lease holder works; deleting its pod hands the
/// Lease to the other replica, which then runs policies. On this one node
/// the pods use the host network, so the second replica cannot start beside
/// the first (one port): it waits, Pending, and starts when the first pod
/// goes. On a cluster of several nodes it waits Running, as a standby.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_replica_takes_over_when_the_leader_pod_is_deleted() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = support::kube_client().await;
    let release = new_release(&client, "failover", 18081).await;
    release
        .helm_with(
            &["install"],
            &release.values(json!({"replicaCount": 2, "podDisruptionBudget": {"enabled": true}})),
            false,
        )
        .unwrap_or_else(|e| panic!("helm install: {e}"));
    let first = eventually("a replica to lead", 180, async || {
        let leader = release.leader(&client).await?;
        release
            .pods(&client)
            .await
            .iter()
            .any(|p| p.metadata.name.as_deref() == Some(&leader) && ready(p))
            .then_some(leader)
    })
    .await;
    assert_eq!(release.pods(&client).await.len(), 2, "two replicas");

    // A policy for the new leader to run: one table in the test PostgreSQL.
    let pg_url = support::setting("POSTGRES_URL", "PostgreSQL");
    let parsed = url::Url::parse(&pg_url).unwrap();
    let mut pg = PgConnection::connect(&pg_url).await.unwrap();
    let table = support::unique("failover").replace('-', "_");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {table} (id bigint PRIMARY KEY, created_at timestamptz);
         INSERT INTO {table} SELECT g, now() - g * interval '1 day' + interval '1 hour' FROM generate_series(1, 40) g;"
    )))
    .execute(&mut pg)
    .await
    .unwrap();
    apply(
        &release.watched,
        &[
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
                "stringData": {"username": parsed.username(), "password": parsed.password()}}),
            json!({"apiVersion": "delenda.dev/v1alpha1", "kind": "DataStore", "metadata": {"name": "db"},
                "spec": {"postgres": {"host": "127.0.0.1", "port": parsed.port(), "database": parsed.path().trim_start_matches('/'),
                    "credentialsSecret": {"name": "db"}, "tls": "Disable"}}}),
            json!({"apiVersion": "delenda.dev/v1alpha1", "kind": "RetentionPolicy", "metadata": {"name": "rows"},
                "spec": {"category": "rows", "description": "rows", "responsibleParty": "self", "legalBasis": "Contract",
                    "retention": {"period": "30d"}, "schedule": {"cron": "0 3 1 1 *", "timeZone": "UTC"}, "mode": "Enforce",
                    "targets": [{"name": "rows", "dataStoreRef": {"name": "db"}, "table": {"name": table, "timeColumn": "created_at"}}]}}),
        ],
    );

    kubectl(&["delete", "pod", &first, "-n", &release.namespace, "--wait=false"], None).unwrap();
    let second = eventually("another replica to take the Lease", 180, async || {
        let leader = release.leader(&client).await?;
        (leader != first
            && release.pods(&client).await.iter().any(|p| p.metadata.name.as_deref() == Some(&leader) && ready(p)))
        .then_some(leader)
    })
    .await;
    println!("{first} led; after its pod was deleted, {second} took over");
    kubectl(
        &["annotate", "-n", &release.watched, "retentionpolicy", "rows", "delenda.dev/run-now=after-failover"],
        None,
    )
    .unwrap();
    let policies: Api<RetentionPolicy> = Api::namespaced(client.clone(), &release.watched);
    let run = eventually("the new leader to run the policy", 120, async || {
        let run = policies.get("rows").await.ok()?.status?.last_run?;
        run.finished_at.is_some().then_some(run)
    })
    .await;
    assert_eq!(run.outcome.as_deref(), Some("Succeeded"), "{run:?}");
    assert_eq!(run.targets[0].records.deleted, 10, "rows 31 to 40 days old");
    helm_uninstall(&release);
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP TABLE {table}"))).execute(&mut pg).await;
}
