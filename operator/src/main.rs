//! The operator binary: parse flags, then either print the CRD or run the controller.

use clap::{Parser, Subcommand};

/// Kubernetes operator for the event-driven order system.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the OrderSystem CustomResourceDefinition as YAML (the source of `crds/`).
    Crd,
}

fn main() {
    let Args { command } = Args::parse();
    match command {
        Command::Crd => print!("{}", ordersystem_operator::crd::crd_yaml()),
    }
}
