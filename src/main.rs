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
    }
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
        .map(|(n, l)| serde_json::from_str::<SealedEvidence>(l).with_context(|| format!("line {} is not a sealed record", n + 1)))
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
