use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

mod kubectl;

/// Delenda enforces the retention periods and erasure rights a privacy
/// statement promises, across databases, buckets and log stores.
#[derive(Parser, Debug)]
#[command(name = "delenda", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start: the controller's many flags make its variant large,
// which costs nothing here.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Print the CustomResourceDefinitions as YAML (kubectl apply -f -).
    Crd {
        /// Instead, write JSON schemas of every kind for offline validators
        /// into this directory, as `delenda.dev/{kind}_{version}.json`
        /// (kubeconform: -schema-location
        /// 'DIR/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json').
        #[arg(long, value_name = "DIR")]
        json_schemas: Option<PathBuf>,
    },
    /// Run the operator: reconcile DataStores and RetentionPolicies in the
    /// cluster of KUBECONFIG or the pod's service account.
    Controller {
        /// Log format: text or json.
        #[arg(long, env = "DELENDA_LOG_FORMAT", default_value = "text")]
        log_format: String,
        /// File holding the installation key (at least 32 random bytes) for
        /// keyed digests of identities; mount it from a Secret. Without it,
        /// ErasureRequests wait.
        #[arg(long, env = "DELENDA_HMAC_KEY_FILE")]
        hmac_key_file: Option<PathBuf>,
        /// Watch only this namespace (every namespace when omitted).
        #[arg(long, env = "DELENDA_NAMESPACE")]
        namespace: Option<String>,
        /// Namespace of the leader-election Lease; by default the pod's own
        /// (POD_NAMESPACE). Only the elected instance reconciles and deletes.
        #[arg(long, env = "POD_NAMESPACE")]
        lease_namespace: Option<String>,
        /// Run without leader election: only safe with exactly one instance.
        #[arg(long)]
        no_leader_election: bool,
        /// Address of /healthz, /readyz and /metrics.
        #[arg(long, env = "DELENDA_HTTP_ADDR", default_value = "0.0.0.0:8080")]
        http_addr: std::net::SocketAddr,
        /// File holding the Ed25519 key (PKCS#8 PEM, `openssl genpkey
        /// -algorithm ed25519`) that signs every evidence record; mount it
        /// from a Secret in the operator's namespace. Without it, records
        /// are unsigned and a rewrite with new digests cannot be detected.
        #[arg(long, env = "DELENDA_SIGNING_KEY_FILE")]
        signing_key_file: Option<PathBuf>,
        /// Seconds an erasure request waits after its first failed pass
        /// (doubling after each failure in a row, up to sixteen times).
        #[arg(long, env = "DELENDA_ERASURE_RETRY_SECONDS", default_value_t = 60)]
        erasure_retry_seconds: u64,
        #[command(flatten)]
        sink: SinkArgs,
        /// Policy runs and erasure passes at once, over every namespace;
        /// more wait their turn.
        #[arg(long, env = "DELENDA_MAX_CONCURRENT_RUNS", default_value_t = delenda::controller::DEFAULT_MAX_CONCURRENT_RUNS)]
        max_concurrent_runs: usize,
        /// A directory that `sqlite`, `files` and `localBuckets` DataStores
        /// may reach (their paths must lie below one, after links are
        /// followed); repeat for more. None may when omitted.
        #[arg(long = "allowed-root", env = "DELENDA_ALLOWED_ROOTS", value_delimiter = ',')]
        allowed_roots: Vec<PathBuf>,
        /// Records an erasure request may erase over all its targets, unless
        /// it sets its own spec.maxRecords.
        #[arg(long, env = "DELENDA_MAX_ERASURE_RECORDS", default_value_t = delenda::controller::DEFAULT_MAX_ERASURE_RECORDS)]
        max_erasure_records: u64,
        #[command(flatten)]
        export: ExportArgs,
        /// Records an access request may export over all its targets,
        /// unless it sets its own spec.maxRecords.
        #[arg(long, env = "DELENDA_MAX_EXPORT_RECORDS", default_value_t = delenda::controller::DEFAULT_MAX_EXPORT_RECORDS)]
        max_export_records: u64,
    },
    /// Run the embedded example without a cluster: five rows of a telecom
    /// provider's retention table over a SQLite CRM, web-analytics logs and
    /// a directory of support call recordings that the demo creates, with
    /// the evidence chain written and verified.
    Demo {
        /// Directory for the demo's data and evidence (created; a fresh
        /// temporary directory when omitted).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Work with evidence chains.
    Evidence {
        #[command(subcommand)]
        command: EvidenceCommand,
    },
    /// Check manifests offline, as CI would: DataStores, RetentionPolicies
    /// and ErasureRequests against the CRD schemas with their CEL rules,
    /// the operator's own checks (cron, time zones, periods), references
    /// between the manifests, and identity Secrets (refused: identities
    /// must not enter Git). Exits 0 when nothing is wrong (warnings
    /// allowed, unless --strict), 1 when something is, 2 when the files
    /// cannot be read.
    Lint {
        /// Files or directories (every .yaml, .yml and .json file below).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Output: `text` (file:line: error[rule]: message) or `github`
        /// (GitHub Actions annotations). Default: github under GitHub
        /// Actions (GITHUB_ACTIONS=true), text otherwise.
        #[arg(long)]
        format: Option<LintFormat>,
        /// Warnings fail the lint too.
        #[arg(long)]
        strict: bool,
    },
}

/// How `delenda lint` prints its findings.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LintFormat {
    Text,
    Github,
}

#[derive(Subcommand, Debug)]
enum EvidenceCommand {
    /// Check evidence chains: every digest, every signature (with
    /// --public-key), every position and link, that the digests named in
    /// the resources' status are in the chain, and, with a sink, that the
    /// cluster's copy matches the locked one. Tells apart records changed in
    /// place, rewritten without the key, reordered, missing, and truncated.
    /// Exits 0 when every chain is intact, 2 when one is not.
    Verify {
        /// Files of sealed records (JSON lines, oldest first; `-` for
        /// stdin), checked as one chain. Without files, reads the chains of
        /// --namespace from the cluster of KUBECONFIG.
        files: Vec<PathBuf>,
        /// Read every chain of this namespace from the cluster.
        #[arg(long, conflicts_with = "files")]
        namespace: Option<String>,
        /// Only this chain (`policy/NAME` or `erasures`).
        #[arg(long)]
        chain: Option<String>,
        /// The operator's public key (PEM); repeat for keys used before a
        /// rotation.
        #[arg(long = "public-key")]
        public_keys: Vec<PathBuf>,
        /// The files hold one segment that may begin after record 0.
        #[arg(long)]
        partial: bool,
        #[command(flatten)]
        sink: SinkArgs,
    },
    /// Print the public key (PEM) of the operator's signing key, for
    /// `evidence verify --public-key`.
    PublicKey {
        /// The signing key: an Ed25519 private key in PKCS#8 PEM.
        #[arg(long, env = "DELENDA_SIGNING_KEY_FILE")]
        signing_key_file: PathBuf,
    },
    /// Compute the keyed digest of one identity, as status and evidence
    /// carry it (`hmac-sha256:<key id>:<hex>`), to find one subject's
    /// records. The value is read from stdin when not given, so it stays
    /// out of the shell's history.
    Digest {
        /// The kind of identity: email, phone, ipAddress, customerId, ...
        #[arg(long)]
        kind: String,
        /// The installation key file; repeat for keys used before a
        /// rotation (one digest per key, with its key id).
        #[arg(long = "key-file", env = "DELENDA_HMAC_KEY_FILE", required = true)]
        key_files: Vec<PathBuf>,
        /// The namespace of the evidence: digests are keyed per namespace.
        #[arg(long)]
        namespace: String,
        /// The identity; read from stdin when omitted.
        value: Option<String>,
    },
    /// Write a certificate for a privacy officer to hand to an auditor:
    /// for one ErasureRequest, or for the runs of one RetentionPolicy
    /// between two dates, what the evidence says was erased or kept,
    /// where, when, why and until when, with every record's digest and
    /// signature. HTML on stdout (or --out), and a PDF with --pdf. Exits 2
    /// when the evidence does not verify; the certificate then says so.
    Certificate {
        /// Read the evidence from this namespace of the cluster of
        /// KUBECONFIG.
        #[arg(long, conflicts_with = "chain_files", required_unless_present = "chain_files")]
        namespace: Option<String>,
        /// Read the evidence from a file of sealed records (JSON lines, `-`
        /// for stdin); repeat for several segments, oldest first.
        #[arg(long = "chain-file")]
        chain_files: Vec<PathBuf>,
        /// The ErasureRequest: NAME, or NAMESPACE/NAME.
        #[arg(long, conflicts_with = "policy", required_unless_present = "policy")]
        erasure_request: Option<String>,
        /// The RetentionPolicy whose runs the certificate covers.
        #[arg(long, requires_all = ["from", "to"])]
        policy: Option<String>,
        /// First day (YYYY-MM-DD) of the period: runs that finished on it or
        /// later, in the policy's time zone.
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
        /// Also print the certificate to this PDF file (with headless
        /// Chromium); without --out, no HTML goes to stdout.
        #[arg(long)]
        pdf: Option<PathBuf>,
        /// The Chromium binary; `chromium` or `chromium-browser` on PATH
        /// when omitted.
        #[arg(long, requires = "pdf")]
        chromium: Option<PathBuf>,
        /// The operator's public key (PEM), to verify every signature;
        /// repeat for keys used before a rotation.
        #[arg(long = "public-key")]
        public_keys: Vec<PathBuf>,
    },
}

/// Where the evidence sink is (a bucket with object lock).
#[derive(clap::Args, Debug, Clone)]
struct SinkArgs {
    /// Bucket (with object lock enabled) that receives every sealed
    /// record, locked in compliance mode. Credentials come from
    /// DELENDA_EVIDENCE_SINK_ACCESS_KEY_ID and
    /// DELENDA_EVIDENCE_SINK_SECRET_ACCESS_KEY.
    #[arg(long, env = "DELENDA_EVIDENCE_SINK_BUCKET")]
    evidence_sink_bucket: Option<String>,
    /// Endpoint of an S3-compatible service; AWS S3 when omitted.
    #[arg(long, env = "DELENDA_EVIDENCE_SINK_ENDPOINT")]
    evidence_sink_endpoint: Option<String>,
    /// Region of the bucket.
    #[arg(long, env = "DELENDA_EVIDENCE_SINK_REGION", default_value = "us-east-1")]
    evidence_sink_region: String,
    /// Prefix of every object name.
    #[arg(long, env = "DELENDA_EVIDENCE_SINK_PREFIX", default_value = "delenda/")]
    evidence_sink_prefix: String,
    /// Path-style addressing (most self-hosted S3 services need it).
    #[arg(long, env = "DELENDA_EVIDENCE_SINK_PATH_STYLE")]
    evidence_sink_path_style: bool,
    /// Days each record stays locked (compliance mode: nobody can shorten
    /// it). Seven years by default.
    #[arg(long, env = "DELENDA_EVIDENCE_SINK_RETENTION_DAYS", default_value_t = 2557)]
    evidence_sink_retention_days: u32,
}

/// Where access requests write their exports (an S3 bucket the
/// installation chooses; never one a request names).
#[derive(clap::Args, Debug, Clone)]
struct ExportArgs {
    /// Bucket that receives access requests' exports. Credentials come
    /// from DELENDA_ACCESS_EXPORT_ACCESS_KEY_ID and
    /// DELENDA_ACCESS_EXPORT_SECRET_ACCESS_KEY. Without it, AccessRequests
    /// wait (Valid False, NoExportDestination).
    #[arg(long, env = "DELENDA_ACCESS_EXPORT_BUCKET")]
    access_export_bucket: Option<String>,
    /// Endpoint of an S3-compatible service; AWS S3 when omitted.
    #[arg(long, env = "DELENDA_ACCESS_EXPORT_ENDPOINT")]
    access_export_endpoint: Option<String>,
    /// Region of the bucket.
    #[arg(long, env = "DELENDA_ACCESS_EXPORT_REGION", default_value = "us-east-1")]
    access_export_region: String,
    /// Prefix of every export's objects.
    #[arg(long, env = "DELENDA_ACCESS_EXPORT_PREFIX", default_value = "access-exports/")]
    access_export_prefix: String,
    /// Path-style addressing (most self-hosted S3 services need it).
    #[arg(long, env = "DELENDA_ACCESS_EXPORT_PATH_STYLE")]
    access_export_path_style: bool,
    /// Days an export stays in the bucket before the operator deletes it.
    #[arg(long, env = "DELENDA_ACCESS_EXPORT_TTL_DAYS", default_value_t = 30)]
    access_export_ttl_days: u32,
}

impl ExportArgs {
    fn destination(&self) -> anyhow::Result<Option<delenda::engine::export::ExportDestination>> {
        let Some(bucket) = self.access_export_bucket.clone() else { return Ok(None) };
        let var = |name: &str| {
            std::env::var(name).with_context(|| format!("the access export bucket needs its credentials in {name}"))
        };
        let settings = delenda::engine::export::ExportSettings {
            s3: delenda::stores::objects::S3Settings {
                endpoint: self.access_export_endpoint.clone(),
                region: self.access_export_region.clone(),
                path_style: self.access_export_path_style,
                access_key_id: var("DELENDA_ACCESS_EXPORT_ACCESS_KEY_ID")?,
                secret_access_key: var("DELENDA_ACCESS_EXPORT_SECRET_ACCESS_KEY")?,
                max_concurrency: 4,
            },
            bucket,
            prefix: self.access_export_prefix.clone(),
            ttl_days: self.access_export_ttl_days,
        };
        Ok(Some(delenda::engine::export::ExportDestination::new(settings)))
    }
}

impl SinkArgs {
    fn sink(&self) -> anyhow::Result<Option<delenda::engine::sink::EvidenceSink>> {
        let Some(bucket) = self.evidence_sink_bucket.clone() else { return Ok(None) };
        let var = |name: &str| {
            std::env::var(name).with_context(|| format!("the evidence sink needs its credentials in {name}"))
        };
        let settings = delenda::engine::sink::SinkSettings {
            s3: delenda::stores::objects::S3Settings {
                endpoint: self.evidence_sink_endpoint.clone(),
                region: self.evidence_sink_region.clone(),
                path_style: self.evidence_sink_path_style,
                access_key_id: var("DELENDA_EVIDENCE_SINK_ACCESS_KEY_ID")?,
                secret_access_key: var("DELENDA_EVIDENCE_SINK_SECRET_ACCESS_KEY")?,
                max_concurrency: 4,
            },
            bucket,
            prefix: self.evidence_sink_prefix.clone(),
            retention: std::time::Duration::from_secs(u64::from(self.evidence_sink_retention_days) * 86_400),
        };
        Ok(Some(delenda::engine::sink::EvidenceSink::new(settings)))
    }
}

fn main() -> anyhow::Result<ExitCode> {
    // The same binary is the kubectl plugin, by the name kubectl finds it by.
    if kubectl::invoked_as_plugin() {
        return kubectl::main();
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Crd { json_schemas: None } => {
            let mut out = std::io::stdout().lock();
            out.write_all(delenda::api::crds_yaml().as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Crd { json_schemas: Some(dir) } => {
            for (path, text) in delenda::api::json_schemas() {
                let path = dir.join(path);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(&path, text)?;
                println!("{}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Evidence { command } => evidence_command(command),
        Command::Lint { paths, format, strict } => {
            let format = format.unwrap_or(if std::env::var("GITHUB_ACTIONS").as_deref() == Ok("true") {
                LintFormat::Github
            } else {
                LintFormat::Text
            });
            let report = match delenda::lint::lint(&paths) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("delenda lint: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            for f in &report.findings {
                match format {
                    LintFormat::Text => println!("{f}"),
                    LintFormat::Github => println!("{}", f.github()),
                }
            }
            let (errors, warnings) = (report.errors(), report.warnings());
            eprintln!(
                "delenda lint: {} objects in {} files: {errors} errors, {warnings} warnings",
                report.objects, report.files
            );
            Ok(if errors > 0 || (strict && warnings > 0) { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
        Command::Demo { dir } => {
            let dir = dir.unwrap_or_else(|| {
                std::env::temp_dir().join(format!("delenda-demo-{}", jiff::Timestamp::now().as_millisecond()))
            });
            let report = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(delenda::standalone::demo(&dir, jiff::Timestamp::now()))?;
            println!("delenda demo in {}\n\n{report}", dir.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Controller {
            log_format,
            hmac_key_file,
            namespace,
            lease_namespace,
            no_leader_election,
            http_addr,
            signing_key_file,
            erasure_retry_seconds,
            sink,
            max_concurrent_runs,
            allowed_roots,
            max_erasure_records,
            export,
            max_export_records,
        } => {
            let options = ControllerOptions {
                max_concurrent_runs,
                allowed_roots,
                max_erasure_records,
                export,
                max_export_records,
                hmac_key_file,
                namespace,
                lease_namespace,
                no_leader_election,
                http_addr,
                signing_key_file,
                erasure_retry: std::time::Duration::from_secs(erasure_retry_seconds.max(1)),
                sink,
            };
            controller(&log_format, options)
        }
    }
}

struct ControllerOptions {
    hmac_key_file: Option<PathBuf>,
    namespace: Option<String>,
    lease_namespace: Option<String>,
    no_leader_election: bool,
    http_addr: std::net::SocketAddr,
    signing_key_file: Option<PathBuf>,
    erasure_retry: std::time::Duration,
    sink: SinkArgs,
    max_concurrent_runs: usize,
    allowed_roots: Vec<PathBuf>,
    max_erasure_records: u64,
    export: ExportArgs,
    max_export_records: u64,
}

fn controller(log_format: &str, options: ControllerOptions) -> anyhow::Result<ExitCode> {
    let ControllerOptions {
        hmac_key_file,
        namespace,
        lease_namespace,
        no_leader_election,
        http_addr,
        signing_key_file,
        erasure_retry,
        sink,
        max_concurrent_runs,
        allowed_roots,
        max_erasure_records,
        export,
        max_export_records,
    } = options;
    // object_store and reqwest bring aws-lc-rs; make it the one provider.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube_runtime=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    // A key file that does not exist yet (the chart mounts the Secret as an
    // optional volume) is waited for: erasure requests wait meanwhile, and the
    // operator restarts to read the key once the kubelet has written it.
    let key_awaited = hmac_key_file.clone().filter(|path| !path.exists());
    let digester = match hmac_key_file.as_deref() {
        Some(path) if key_awaited.is_some() => {
            tracing::warn!(
                path = %path.display(),
                "the installation key file does not exist yet: ErasureRequests wait; the operator restarts once it appears"
            );
            None
        }
        Some(path) => {
            let key =
                std::fs::read(path).with_context(|| format!("cannot read the installation key {}", path.display()))?;
            Some(delenda::engine::evidence::SubjectDigester::new(&key)?)
        }
        None => {
            tracing::warn!("no --hmac-key-file: ErasureRequests will wait until the operator has an installation key");
            None
        }
    };
    let signer = match signing_key_file.as_deref() {
        Some(path) => {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the signing key {}", path.display()))?;
            let signer = delenda::engine::evidence::Signer::from_pem(&pem)?;
            tracing::info!(key_id = signer.key_id(), "evidence records are signed");
            Some(signer)
        }
        None => {
            tracing::warn!(
                "no --signing-key-file: evidence records are not signed, so a chain rewritten with new digests cannot be told from the operator's"
            );
            None
        }
    };
    let sink = sink.sink()?.map(std::sync::Arc::new);
    let export = export.destination()?.map(std::sync::Arc::new);
    if export.is_none() {
        tracing::warn!(
            "no --access-export-bucket: AccessRequests wait until the installation configures where exports go"
        );
    }
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async {
        if let Some(sink) = &sink {
            match sink.check().await {
                Ok(()) => tracing::info!(bucket = sink.bucket(), "evidence records are also locked in the sink"),
                Err(e) => tracing::warn!(error = %e, "the evidence sink is not usable yet; runs and erasures say so in their EvidenceStored condition"),
            }
        }
        let metrics = std::sync::Arc::new(delenda::metrics::Metrics::new());
        let health = std::sync::Arc::new(delenda::http::Health { ready: false.into(), metrics: metrics.clone() });
        let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
        let listener = delenda::http::bind(http_addr)
            .await
            .with_context(|| format!("cannot serve /healthz, /readyz and /metrics on {http_addr} (--http-addr)"))?;
        let http = tokio::spawn(delenda::http::serve(listener, health.clone(), async move {
            let _ = http_stopped.await;
        }));
        let config = kube::Config::infer().await.context("cannot build a Kubernetes client")?;
        let client = metrics.counted_client(config).context("cannot build a Kubernetes client")?;
        delenda::controller::wait_for_crds(&client, std::time::Duration::from_secs(300)).await?;
        tracing::info!("CRDs established; starting controllers");
        health.ready.store(true, std::sync::atomic::Ordering::Relaxed);
        let lease_namespace = match (no_leader_election, lease_namespace) {
            (true, _) => None,
            (false, Some(ns)) => Some(ns),
            (false, None) => Some(client.default_namespace().to_owned()),
        };
        let identity = std::env::var("POD_NAME")
            .unwrap_or_else(|_| format!("delenda-{}-{}", std::process::id(), jiff::Timestamp::now().as_millisecond()));
        let settings = delenda::controller::Settings {
            identity,
            digester,
            namespace,
            lease_namespace,
            metrics,
            erasure_retry,
            signer,
            sink,
            max_concurrent_runs,
            allowed_roots,
            max_erasure_records,
            export,
            max_export_records,
        };
        let lost = delenda::controller::run(client, settings, async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("a SIGTERM handler installs");
            let key_appears = async {
                let Some(path) = key_awaited else { return std::future::pending().await };
                while !path.exists() {
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                }
                tracing::info!(path = %path.display(), "the installation key appeared: restarting to use it");
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
                _ = key_appears => {}
            }
            tracing::info!("shutting down: runs in flight finish their batch");
        })
        .await;
        let _ = http_stop.send(());
        match http.await {
            Ok(Err(e)) => tracing::error!(error = %e, addr = %http_addr, "the HTTP server failed"),
            Err(e) => tracing::error!(error = %e, "the HTTP server panicked"),
            Ok(Ok(())) => {}
        }
        // A lost lease ends the process, so its pod restarts as a follower.
        Ok(if lost { ExitCode::from(3) } else { ExitCode::SUCCESS })
    })
}

fn evidence_command(command: EvidenceCommand) -> anyhow::Result<ExitCode> {
    match command {
        EvidenceCommand::Verify { files, namespace, chain, public_keys, partial, sink } => {
            let keys = public_keys
                .iter()
                .map(|p| {
                    let pem = std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
                    Ok(delenda::engine::evidence::PublicKey::from_pem(&pem)?)
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let verdicts = if let Some(namespace) = namespace {
                let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
                let sink = sink.sink()?;
                tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
                    let client = kube::Client::try_default().await.context("cannot build a Kubernetes client")?;
                    let verdicts =
                        delenda::audit::verify_namespace(&client, &namespace, chain.as_deref(), &keys, sink.as_ref())
                            .await?;
                    anyhow::Ok(verdicts)
                })?
            } else if files.is_empty() {
                anyhow::bail!("give files of sealed records, or --namespace to read the chains from the cluster");
            } else {
                let paths: Vec<&std::path::Path> = files.iter().map(PathBuf::as_path).collect();
                vec![delenda::audit::verify_files(&paths, &keys, partial)?]
            };
            print!("{}", delenda::audit::render(&verdicts));
            if verdicts.is_empty() {
                println!("no evidence chains found");
            }
            Ok(if verdicts.iter().all(delenda::audit::Verdict::ok) { ExitCode::SUCCESS } else { ExitCode::from(2) })
        }
        EvidenceCommand::Certificate {
            namespace,
            chain_files,
            erasure_request,
            policy,
            from,
            to,
            lang,
            out,
            pdf,
            chromium,
            public_keys,
        } => {
            use delenda::certificate::{Selection, command};
            let selection = match (erasure_request, policy, from, to) {
                (Some(request), ..) => Selection::Erasure { request },
                (None, Some(name), Some(from), Some(to)) => Selection::Policy { name, from, to },
                _ => anyhow::bail!("give --erasure-request NAME, or --policy NAME --from DATE --to DATE"),
            };
            let origin = match namespace {
                Some(ns) => command::Origin::Cluster(ns),
                None => command::Origin::Files(chain_files),
            };
            let options = command::Options { origin, selection, lang, out, pdf, chromium, public_keys };
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            let intact =
                tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(command::run(options))?;
            if !intact {
                eprintln!("the evidence does not verify: the certificate says so, and is no proof of what it lists");
            }
            Ok(if intact { ExitCode::SUCCESS } else { ExitCode::from(2) })
        }
        EvidenceCommand::PublicKey { signing_key_file } => {
            let pem = std::fs::read_to_string(&signing_key_file)
                .with_context(|| format!("cannot read {}", signing_key_file.display()))?;
            let signer = delenda::engine::evidence::Signer::from_pem(&pem)?;
            print!("{}", signer.public_key().to_pem());
            eprintln!("key id {}", signer.key_id());
            Ok(ExitCode::SUCCESS)
        }
        EvidenceCommand::Digest { kind, key_files, namespace, value } => {
            let value = match value {
                Some(v) => v,
                None => std::io::read_to_string(std::io::stdin())?.trim_end_matches(['\n', '\r']).to_owned(),
            };
            anyhow::ensure!(!value.trim().is_empty(), "no identity given (as an argument or on stdin)");
            for path in key_files {
                let key = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
                let digester = delenda::engine::evidence::SubjectDigester::new(&key)?.for_namespace(&namespace);
                println!("{}", digester.digest(&kind, &value));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
