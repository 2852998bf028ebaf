//! `kubectl delenda`: the same binary, run by kubectl as the plugin
//! `kubectl-delenda` (a link by that name on PATH). For the people on call
//! and the privacy office: where policies and requests stand, a run now,
//! an erasure request filed without its identities passing through Git,
//! and the evidence checked and certified from the cluster. It never prints
//! an identity.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use delenda::api::erasure::{ErasureGround, VerificationMethod};
use delenda::api::{AccessRequest, ErasureRequest, Hold, RetentionPolicy};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};

use crate::{EvidenceCommand, SinkArgs, evidence_command};

/// The name kubectl finds the plugin by.
pub const PLUGIN: &str = "kubectl-delenda";

/// Whether this process was started as `kubectl-delenda`.
pub fn invoked_as_plugin() -> bool {
    std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .is_some_and(|n| n == PLUGIN)
}

/// Delenda's retention policies, erasure requests and evidence, from the
/// cluster of KUBECONFIG.
#[derive(Parser, Debug)]
#[command(name = "kubectl delenda", bin_name = "kubectl delenda", version)]
struct Plugin {
    /// The namespace; the kubeconfig context's when omitted.
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    #[command(subcommand)]
    command: PluginCommand,
}

#[derive(Subcommand, Debug)]
enum PluginCommand {
    /// Policies, erasure requests, holds and access requests at a glance:
    /// where each stands, the last and next run and what it deleted, each
    /// request's deadline and whether it is overdue, what each hold keeps.
    Status {
        /// Every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
    /// Run a policy once now, whatever its schedule (the
    /// `delenda.dev/run-now` annotation, which the operator answers once per
    /// value).
    RunNow {
        /// The RetentionPolicy.
        policy: String,
        /// The value to set; the current time when omitted.
        #[arg(long)]
        token: Option<String>,
        /// Wait until the run has finished and print its outcome.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits, in seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// File an erasure request: the identity Secret (labelled
    /// `delenda.dev/identity: "true"`, deleted by the operator once the
    /// request completes) and the ErasureRequest, in one step, so the
    /// identities never pass through Git. The identities are never printed.
    Erase {
        /// The ErasureRequest's name; the Secret is NAME-identity.
        name: String,
        /// An identity, KIND=VALUE (email, phone, ipAddress, customerId,
        /// imei, or a kind a policy declares); repeat for more.
        #[arg(long = "identity", value_name = "KIND=VALUE")]
        identities: Vec<String>,
        /// An identity of this KIND read from stdin (one line), so it stays
        /// out of the shell's history.
        #[arg(long = "identity-from-stdin", value_name = "KIND")]
        identity_from_stdin: Option<String>,
        /// The ground under GDPR Art. 17(1): NoLongerNecessary,
        /// ConsentWithdrawn, Objection, UnlawfulProcessing, LegalObligation
        /// or ChildConsent.
        #[arg(long)]
        ground: String,
        /// When the request was received (RFC 3339); now when omitted.
        #[arg(long)]
        received_at: Option<jiff::Timestamp>,
        /// Who verified the requester's identity (a name or staff id).
        #[arg(long)]
        verified_by: String,
        /// How: IdentityDocument, AuthenticatedAccount, KnownContactChannel,
        /// ControllerInstruction or InPerson.
        #[arg(long)]
        verification_method: String,
        /// The customer organisation on whose instruction the erasure is done.
        #[arg(long)]
        on_behalf_of: Option<String>,
        /// Only report what would be erased and retained.
        #[arg(long)]
        dry_run: bool,
        /// Keep the identity Secret after the request completes.
        #[arg(long)]
        keep_identity_secret: bool,
    },
    /// Verify the evidence chains of the namespace, read from the cluster
    /// (as `delenda evidence verify --namespace`). Exits 2 when one is not
    /// intact.
    Evidence {
        #[command(subcommand)]
        command: PluginEvidence,
    },
    /// A certificate of an erasure request, or of a policy's runs between
    /// two dates, from the evidence in the cluster (as `delenda evidence
    /// certificate --namespace`).
    Certificate {
        /// The ErasureRequest.
        #[arg(long, conflicts_with = "policy", required_unless_present = "policy")]
        erasure_request: Option<String>,
        /// The RetentionPolicy whose runs the certificate covers.
        #[arg(long, requires_all = ["from", "to"])]
        policy: Option<String>,
        /// First day (YYYY-MM-DD) of the period.
        #[arg(long, requires = "policy")]
        from: Option<jiff::civil::Date>,
        /// Last day (YYYY-MM-DD) of the period, inclusive.
        #[arg(long, requires = "policy")]
        to: Option<jiff::civil::Date>,
        /// Language: en or nl.
        #[arg(long, default_value = "en")]
        lang: delenda::certificate::Lang,
        /// Write the HTML to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also print the certificate to this PDF file (headless Chromium).
        #[arg(long)]
        pdf: Option<PathBuf>,
        /// The Chromium binary.
        #[arg(long, requires = "pdf")]
        chromium: Option<PathBuf>,
        /// The operator's public key (PEM); repeat for keys used before a rotation.
        #[arg(long = "public-key")]
        public_keys: Vec<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum PluginEvidence {
    /// Check every chain of the namespace (or one): digests, signatures
    /// (with --public-key), links, and the digests status names.
    Verify {
        /// Only this chain (`policy/NAME` or `erasures`).
        #[arg(long)]
        chain: Option<String>,
        /// The operator's public key (PEM); repeat for keys used before a rotation.
        #[arg(long = "public-key")]
        public_keys: Vec<PathBuf>,
        #[command(flatten)]
        sink: SinkArgs,
    },
}

/// Runs the plugin.
pub fn main() -> anyhow::Result<ExitCode> {
    let plugin = Plugin::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (client, namespace) = runtime.block_on(async {
        let client = Client::try_default().await.context("cannot build a Kubernetes client (KUBECONFIG)")?;
        let namespace = plugin.namespace.clone().unwrap_or_else(|| client.default_namespace().to_owned());
        anyhow::Ok((client, namespace))
    })?;
    match plugin.command {
        PluginCommand::Status { all_namespaces } => {
            let ns = (!all_namespaces).then_some(namespace.as_str());
            let text = runtime.block_on(status(&client, ns, jiff::Timestamp::now()))?;
            std::io::stdout().lock().write_all(text.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::RunNow { policy, token, wait, timeout } => {
            runtime.block_on(run_now(&client, &namespace, &policy, token, wait.then_some(timeout)))
        }
        PluginCommand::Erase {
            name,
            identities,
            identity_from_stdin,
            ground,
            received_at,
            verified_by,
            verification_method,
            on_behalf_of,
            dry_run,
            keep_identity_secret,
        } => {
            let mut pairs = identities
                .iter()
                .map(|i| {
                    let (kind, value) = i.split_once('=').context("an --identity is KIND=VALUE")?;
                    anyhow::ensure!(!kind.is_empty() && !value.trim().is_empty(), "an --identity is KIND=VALUE");
                    Ok((kind.to_owned(), value.to_owned()))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            if let Some(kind) = identity_from_stdin {
                let value = std::io::read_to_string(std::io::stdin())?.trim_end_matches(['\n', '\r']).to_owned();
                anyhow::ensure!(!value.trim().is_empty(), "no identity on stdin");
                pairs.push((kind, value));
            }
            anyhow::ensure!(!pairs.is_empty(), "give at least one --identity KIND=VALUE or --identity-from-stdin KIND");
            let request = Erasure {
                name,
                identities: pairs,
                ground: parse_enum::<ErasureGround>("--ground", &ground)?,
                received_at: received_at.unwrap_or_else(jiff::Timestamp::now),
                verified_by,
                method: parse_enum::<VerificationMethod>("--verification-method", &verification_method)?,
                on_behalf_of,
                dry_run,
                delete_identity_secret: !keep_identity_secret,
            };
            runtime.block_on(erase(&client, &namespace, request))?;
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Evidence { command: PluginEvidence::Verify { chain, public_keys, sink } } => {
            drop(runtime);
            evidence_command(EvidenceCommand::Verify {
                files: vec![],
                namespace: Some(namespace),
                chain,
                public_keys,
                partial: false,
                sink,
            })
        }
        PluginCommand::Certificate { erasure_request, policy, from, to, lang, out, pdf, chromium, public_keys } => {
            drop(runtime);
            evidence_command(EvidenceCommand::Certificate {
                namespace: Some(namespace),
                chain_files: vec![],
                erasure_request,
                policy,
                from,
                to,
                lang,
                out,
                pdf,
                chromium,
                public_keys,
            })
        }
    }
}

/// One of the API's enums, by the name the API uses, with the names it
/// takes when the value is not one of them.
fn parse_enum<T: serde::de::DeserializeOwned + schemars::JsonSchema>(flag: &str, value: &str) -> anyhow::Result<T> {
    serde_json::from_value(serde_json::Value::String(value.to_owned())).map_err(|_| {
        let schema = serde_json::to_value(schemars::schema_for!(T)).unwrap_or_default();
        let names: Vec<String> = schema["enum"]
            .as_array()
            .or_else(|| schema["oneOf"].as_array())
            .map(|values| {
                values
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned).or_else(|| v["const"].as_str().map(str::to_owned)))
                    .collect()
            })
            .unwrap_or_default();
        anyhow::anyhow!("{flag} {value:?} is not one of: {}", names.join(", "))
    })
}

/// The condition among Ready, Reconciling and Stalled that is True, with
/// its reason: where the object stands.
fn standing(conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]) -> String {
    ["Stalled", "Reconciling", "Ready"]
        .iter()
        .find_map(|t| conditions.iter().find(|c| c.type_ == *t && c.status == "True"))
        .map_or_else(|| "Unknown".to_owned(), |c| format!("{} ({})", c.type_, c.reason))
}

fn time(t: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> String {
    t.map_or_else(|| "-".to_owned(), |t| t.0.strftime("%Y-%m-%d %H:%M:%SZ").to_string())
}

/// Columns, left-aligned, two spaces apart.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| -> String {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out += cell;
            } else {
                out += &format!("{cell:<w$}  ");
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out += &line(row.clone());
    }
    out
}

/// The status tables of policies, erasure requests, holds and access
/// requests in `namespace` (every one when None), as of `now`.
async fn status(client: &Client, namespace: Option<&str>, now: jiff::Timestamp) -> anyhow::Result<String> {
    let policies = section::<RetentionPolicy>(
        client,
        namespace,
        "RETENTION POLICIES",
        &["NAMESPACE", "NAME", "MODE", "STANDING", "LAST RUN", "OUTCOME", "DELETED", "NEXT RUN"],
        |p| {
            let s = p.status.clone().unwrap_or_default();
            let last = s.last_run.as_ref();
            let mut standing = standing(&s.conditions);
            if p.spec.suspend {
                standing += ", suspended";
            }
            vec![
                format!("{:?}", p.spec.mode),
                standing,
                time(last.and_then(|r| r.finished_at.as_ref()).or(last.map(|r| &r.started_at))),
                last.and_then(|r| r.outcome.clone()).unwrap_or_else(|| "-".into()),
                s.history.first().map_or_else(|| "-".into(), |h| h.deleted.to_string()),
                if s.current_run.is_some() { "running".into() } else { time(s.next_run.as_ref()) },
            ]
        },
    )
    .await?;
    let erasures = section::<ErasureRequest>(
        client,
        namespace,
        "ERASURE REQUESTS",
        &["NAMESPACE", "NAME", "PHASE", "STANDING", "DEADLINE", "OVERDUE", "ERASED", "RETAINED"],
        |r| {
            let s = r.status.clone().unwrap_or_default();
            let done = matches!(s.phase, Some(delenda::api::erasure::ErasurePhase::Completed));
            vec![
                s.phase.map_or_else(|| "Pending".into(), |p| format!("{p:?}")),
                standing(&s.conditions),
                time(s.deadline.as_ref()),
                overdue(&s.conditions, s.deadline.as_ref(), done, now),
                count(s.summary.as_ref().map(|x| x.erased)),
                count(s.summary.as_ref().map(|x| x.retained)),
            ]
        },
    )
    .await?;
    let holds = section::<Hold>(
        client,
        namespace,
        "HOLDS",
        &["NAMESPACE", "NAME", "PHASE", "STANDING", "REASON", "PLACED", "ENDS", "HELD"],
        |h| {
            let s = h.status.clone().unwrap_or_default();
            vec![
                s.phase.map_or_else(|| "Pending".into(), |p| format!("{p:?}")),
                standing(&s.conditions),
                format!("{:?}", h.spec.reason),
                time(s.placed_at.as_ref()),
                h.spec.ends_at.as_ref().map_or_else(|| "until lifted".into(), |t| time(Some(t))),
                count(s.held),
            ]
        },
    )
    .await?;
    let access = section::<AccessRequest>(
        client,
        namespace,
        "ACCESS REQUESTS",
        &["NAMESPACE", "NAME", "PHASE", "STANDING", "DEADLINE", "OVERDUE", "RECORDS", "EXPORT EXPIRES"],
        |r| {
            use delenda::api::access::AccessPhase;
            let s = r.status.clone().unwrap_or_default();
            let done = matches!(s.phase, Some(AccessPhase::Completed | AccessPhase::Expired));
            vec![
                s.phase.map_or_else(|| "Pending".into(), |p| format!("{p:?}")),
                standing(&s.conditions),
                time(s.deadline.as_ref()),
                overdue(&s.conditions, s.deadline.as_ref(), done, now),
                count(s.records),
                if s.export_deleted_at.is_some() { "deleted".into() } else { time(s.expires_at.as_ref()) },
            ]
        },
    )
    .await?;
    Ok([policies, erasures, holds, access].join("\n"))
}

/// One table: the objects of kind `K` in `namespace` (every one when None)
/// by namespace and name, each row its namespace, name and the cells `row`
/// gives; an object this binary cannot read gets a row that says so.
async fn section<K>(
    client: &Client,
    namespace: Option<&str>,
    title: &str,
    header: &[&str],
    row: impl Fn(&K) -> Vec<String>,
) -> anyhow::Result<String>
where
    K: kube::Resource<DynamicType = ()> + serde::de::DeserializeOwned,
{
    let (mut items, unread) = list::<K>(client, namespace).await?;
    items.sort_by_key(|k| (k.namespace(), k.name_any()));
    let rows = items.iter().map(|k| [vec![k.namespace().unwrap_or_default(), k.name_any()], row(k)].concat()).collect();
    let rows = with_unreadable(rows, unread, header.len());
    Ok(format!("{title}\n{}", table(header, &rows)))
}

/// A count, or `-` when there is none yet.
fn count(n: Option<i64>) -> String {
    n.map_or_else(|| "-".to_owned(), |n| n.to_string())
}

/// Whether a request is past its deadline: the Overdue condition, and the
/// days left while it is not done.
fn overdue(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    deadline: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    done: bool,
    now: jiff::Timestamp,
) -> String {
    let overdue = conditions.iter().find(|c| c.type_ == "Overdue").map(|c| c.status == "True");
    let days_left = deadline.map(|d| (d.0.as_second() - now.as_second()).div_euclid(86_400));
    match (overdue, days_left) {
        (Some(true), _) => "yes".to_owned(),
        (_, Some(d)) if !done && d >= 0 => format!("no ({d} days left)"),
        (Some(false), _) => "no".into(),
        _ => "-".into(),
    }
}

/// The objects of kind `K` in `namespace` (every one when None), and the
/// namespace and name of those this binary cannot read (written by a newer
/// operator, say), so one such object does not hide all the others.
async fn list<K>(client: &Client, namespace: Option<&str>) -> anyhow::Result<(Vec<K>, Vec<(String, String)>)>
where
    K: kube::Resource<DynamicType = ()> + serde::de::DeserializeOwned,
{
    let resource = kube::api::ApiResource::erase::<K>(&());
    let api: Api<kube::api::DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let list = api.list(&ListParams::default()).await.with_context(|| format!("cannot list {}", resource.plural))?;
    let (mut read, mut unread) = (vec![], vec![]);
    for item in list.items {
        let id = (item.namespace().unwrap_or_default(), item.name_any());
        match serde_json::to_value(item).map(serde_json::from_value::<K>) {
            Ok(Ok(k)) => read.push(k),
            _ => unread.push(id),
        }
    }
    unread.sort();
    Ok((read, unread))
}

/// `rows` and a row for each object that could not be read.
fn with_unreadable(mut rows: Vec<Vec<String>>, unread: Vec<(String, String)>, columns: usize) -> Vec<Vec<String>> {
    for (namespace, name) in unread {
        let mut row = vec![namespace, name, "-".into(), "unreadable by this version".into()];
        row.resize(columns, "-".into());
        rows.push(row);
    }
    rows
}

/// Sets the run-now annotation, and with `wait` waits for the run it asks for.
async fn run_now(
    client: &Client,
    namespace: &str,
    name: &str,
    token: Option<String>,
    wait: Option<u64>,
) -> anyhow::Result<ExitCode> {
    let api: Api<RetentionPolicy> = Api::namespaced(client.clone(), namespace);
    let policy = api.get_opt(name).await?.with_context(|| format!("no RetentionPolicy {namespace}/{name}"))?;
    anyhow::ensure!(!policy.spec.suspend, "RetentionPolicy {namespace}/{name} is suspended: it does not run");
    let token = token.unwrap_or_else(|| jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ").to_string());
    anyhow::ensure!(
        !token.is_empty() && token.len() <= 64,
        "the run-now value must be 1 to 64 characters (it becomes part of the run's id)"
    );
    if policy.status.as_ref().and_then(|s| s.run_now_answered.as_deref()) == Some(token.as_str()) {
        anyhow::bail!("the value {token} was answered already; each value runs the policy once");
    }
    let patch = serde_json::json!({"metadata": {"annotations": {delenda::controller::policy::RUN_NOW: token}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    println!("retentionpolicy/{name}: run requested ({}={token})", delenda::controller::policy::RUN_NOW);
    let Some(timeout) = wait else { return Ok(ExitCode::SUCCESS) };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(timeout);
    loop {
        let status = api.get(name).await?.status.unwrap_or_default();
        if let Some(run) = status.last_run.as_ref().filter(|r| r.id.ends_with(&format!("~{token}")))
            && let Some(outcome) = &run.outcome
        {
            let deleted = status.history.first().filter(|h| h.id == run.id).map_or(0, |h| h.deleted);
            println!("run {}: {outcome}, {deleted} records deleted", run.id);
            return Ok(if outcome == "Succeeded" { ExitCode::SUCCESS } else { ExitCode::from(2) });
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "the run did not finish within {timeout} s");
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// What `erase` files.
struct Erasure {
    name: String,
    identities: Vec<(String, String)>,
    ground: ErasureGround,
    received_at: jiff::Timestamp,
    verified_by: String,
    method: VerificationMethod,
    on_behalf_of: Option<String>,
    dry_run: bool,
    delete_identity_secret: bool,
}

/// Checks the request with a server-side dry run, then creates the identity
/// Secret and the request. A request the API server refuses is refused
/// before any identity is stored; should the request still fail after the
/// Secret exists, the Secret is deleted again, or the error says it was not.
async fn erase(client: &Client, namespace: &str, e: Erasure) -> anyhow::Result<()> {
    let secret_name = format!("{}-identity", e.name);
    let mut data = BTreeMap::new();
    for (kind, value) in &e.identities {
        anyhow::ensure!(data.insert(kind.clone(), value.clone()).is_none(), "--identity {kind} is given twice");
    }
    let mut spec = serde_json::json!({
        "identitySecretRef": {"name": secret_name},
        "ground": e.ground,
        "receivedAt": e.received_at.to_string(),
        "identityVerification": {"verifiedBy": e.verified_by, "method": e.method},
        "mode": if e.dry_run { "DryRun" } else { "Enforce" },
        "deleteIdentitySecret": e.delete_identity_secret,
    });
    if let Some(customer) = e.on_behalf_of {
        spec["onBehalfOf"] = customer.into();
    }
    let request: ErasureRequest = serde_json::from_value(serde_json::json!({
        "apiVersion": "delenda.dev/v1alpha1", "kind": "ErasureRequest",
        "metadata": {"name": e.name}, "spec": spec,
    }))?;
    let requests: Api<ErasureRequest> = Api::namespaced(client.clone(), namespace);
    let check = PostParams { dry_run: true, ..Default::default() };
    if let Err(err) = requests.create(&check, &request).await {
        anyhow::bail!("the ErasureRequest {namespace}/{} is refused: {}; nothing was created", e.name, reason(&err));
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": secret_name, "labels": {"delenda.dev/identity": "true", "app.kubernetes.io/managed-by": "kubectl-delenda"}},
        "type": "Opaque", "stringData": data,
    }))?;
    // Errors name the objects, never the values.
    secrets.create(&PostParams::default(), &secret).await.map_err(|err| {
        anyhow::anyhow!(
            "cannot create the identity Secret {namespace}/{secret_name}: {}; nothing was created",
            reason(&err)
        )
    })?;
    if let Err(err) = requests.create(&PostParams::default(), &request).await {
        let cleanup = match secrets.delete(&secret_name, &DeleteParams::default()).await {
            Ok(_) => "the identity Secret was deleted again".to_owned(),
            Err(d) => format!("the identity Secret {secret_name} could NOT be deleted ({}): delete it", reason(&d)),
        };
        anyhow::bail!("cannot create the ErasureRequest {namespace}/{}: {}; {cleanup}", e.name, reason(&err));
    }
    let kinds: Vec<&str> = e.identities.iter().map(|(k, _)| k.as_str()).collect();
    println!(
        "secret/{secret_name} created (identities: {})\nerasurerequest/{} created{}",
        kinds.join(", "),
        e.name,
        if e.dry_run { " (dry run)" } else { "" }
    );
    Ok(())
}

/// The API server's reason for refusing, without the object it echoes.
fn reason(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.reason),
        other => other.to_string(),
    }
}
