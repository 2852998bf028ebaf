use std::io::Write;

use clap::{Parser, Subcommand};

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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            let mut out = std::io::stdout().lock();
            out.write_all(delenda::api::crds_yaml().as_bytes())?;
        }
    }
    Ok(())
}
