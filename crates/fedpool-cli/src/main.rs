//! The `fedpool` command-line tool.

mod demo;
mod load;
mod report;
mod simulate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// fedpool: consent-first federated learning.
#[derive(Debug, Parser)]
#[command(name = "fedpool", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the guided demo: 100 clients on the bundled digits, non-IID, with a chart at the end.
    Demo(demo::DemoArgs),
    /// Simulate federated training of a contract over many in-process clients.
    Simulate(simulate::SimulateArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FEDPOOL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Simulate(args) => simulate::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
