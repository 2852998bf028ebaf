use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use delenda::engine::evidence::{self, SealedEvidence};

/// Delenda enforces the retention periods and erasure rights a privacy
/// statement promises, across databases, buckets and log stores.
#[derive(Parser, Debug)]
#[command(name = "delenda", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the CustomResourceDefinitions as YAML (kubectl apply -f -).
    Crd,
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
    },
    /// Run the embedded example without a cluster: four rows of a telecom
    /// provider's retention table over a SQLite CRM and web-analytics logs
    /// that the demo creates, with the evidence chain written and verified.
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
}

#[derive(Subcommand, Debug)]
enum EvidenceCommand {
    /// Check a chain of sealed evidence records (JSON lines, oldest first):
    /// every digest, and every link to the record before.
    Verify {
        /// File of sealed records, one JSON object a line; `-` for stdin.
        file: PathBuf,
    },
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            let mut out = std::io::stdout().lock();
            out.write_all(delenda::api::crds_yaml().as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Evidence { command: EvidenceCommand::Verify { file } } => verify(&file),
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
        } => {
            let options =
                ControllerOptions { hmac_key_file, namespace, lease_namespace, no_leader_election, http_addr };
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
}

fn controller(log_format: &str, options: ControllerOptions) -> anyhow::Result<ExitCode> {
    let ControllerOptions { hmac_key_file, namespace, lease_namespace, no_leader_election, http_addr } = options;
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
    let digester = match hmac_key_file.as_deref() {
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
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async {
        let metrics = std::sync::Arc::new(delenda::metrics::Metrics::new());
        let health = std::sync::Arc::new(delenda::http::Health { ready: false.into(), metrics: metrics.clone() });
        let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
        let listener = delenda::http::bind(http_addr)
            .await
            .with_context(|| format!("cannot serve /healthz, /readyz and /metrics on {http_addr} (--http-addr)"))?;
        let http = tokio::spawn(delenda::http::serve(listener, health.clone(), async move {
            let _ = http_stopped.await;
        }));
        let client = kube::Client::try_default().await.context("cannot build a Kubernetes client")?;
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
            ..Default::default()
        };
        let lost = delenda::controller::run(client, settings, async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("a SIGTERM handler installs");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
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

fn verify(file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?
    };
    let chain = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            serde_json::from_str::<SealedEvidence>(l).with_context(|| format!("line {} is not a sealed record", n + 1))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    match evidence::verify_chain(&chain) {
        Ok(()) => {
            let last = chain.last().map(|s| s.digest.to_string()).unwrap_or_else(|| "(empty)".into());
            println!("ok: {} records, chain intact, last digest {last}", chain.len());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("broken: {e}");
            Ok(ExitCode::from(2))
        }
    }
}
