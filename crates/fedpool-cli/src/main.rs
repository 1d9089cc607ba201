//! The `fedpool` command-line tool.

mod cmd_chain;
mod cmd_cluster;
mod cmd_consent;
mod cmd_ledger;
mod cmd_models;
mod cmd_node;
mod cmd_policy;
mod cmd_privacy;
mod cmd_release;
mod cmd_rewards;
mod demo;
mod home;
mod load;
mod node;
mod owner;
mod receipt;
mod report;
mod simulate;
mod web;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::home::Home;

/// fedpool: consent-first federated learning.
#[derive(Debug, Parser)]
#[command(name = "fedpool", version, about, propagate_version = true)]
struct Cli {
    /// The node's home directory (default: $FEDPOOL_HOME, else ~/.fedpool).
    #[arg(long, global = true)]
    home: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the guided demo: 100 clients on the bundled digits, non-IID, with a chart at the end.
    Demo(demo::DemoArgs),
    /// Simulate federated training of a contract over many in-process clients.
    Simulate(Box<simulate::SimulateArgs>),
    /// Create this node's identity (an Ed25519 key, printed as a did:key) and ledger.
    Init(cmd_models::InitArgs),
    /// Sign and publish a model contract to the ledger; prints the model id.
    Publish(cmd_models::PublishArgs),
    /// List published models with their purpose, privacy and reward terms.
    Models(cmd_models::ModelsArgs),
    /// Show a model's transparency card.
    Card(cmd_models::CardArgs),
    /// Register local datasets (the rows stay where they are).
    #[command(subcommand)]
    Data(cmd_consent::DataCommand),
    /// Grant, revoke, list and explain consents.
    #[command(subcommand)]
    Consent(cmd_consent::ConsentCommand),
    /// Set or show this node's consent policy (rules that grant or refuse models).
    #[command(subcommand)]
    Policy(cmd_policy::PolicyCommand),
    /// Plan privacy budgets with the Rényi-DP accountant.
    #[command(subcommand)]
    Privacy(cmd_privacy::PrivacyCommand),
    /// What an owner earned, per model and round, from the payouts on the ledger.
    Rewards(cmd_rewards::RewardsArgs),
    /// Open the running node's web page in the browser, logged in (a one-time link).
    Open(web::OpenArgs),
    /// Release a model this node trained: sign ModelReleased, write its weights and model card.
    Release(cmd_release::ReleaseArgs),
    /// Show, verify, export and import the ledger.
    #[command(subcommand)]
    Ledger(cmd_ledger::LedgerCommand),
    /// Run this node on the network, or ask the running node for its status.
    #[command(subcommand)]
    Node(cmd_node::NodeCommand),
    /// Ask this home's running node to train a model it published, over the network.
    Train(cmd_node::TrainArgs),
    /// Deploy or point at the anchor, reward token and payout contracts on an EVM chain.
    #[command(subcommand)]
    Chain(cmd_chain::ChainCommand),
    /// Create this node's EVM wallet, link or unlink wallets to its DID.
    #[command(subcommand)]
    Wallet(cmd_chain::WalletCommand),
    /// Put the Merkle root of every ledger chain head into the anchor contract, and record it.
    Anchor(cmd_chain::AnchorArgs),
    /// Pay a model's unsettled rewards as tokens to owners' linked wallets, in batches.
    Settle(cmd_chain::SettleArgs),
    /// Start or stop a local network of node processes on loopback.
    #[command(subcommand)]
    Cluster(cmd_cluster::ClusterCommand),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FEDPOOL_LOG")
                // alloy's poller logs every failed poll of a chain that went away as an error;
                // the client's own retry warning says it once.
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new("warn,alloy_rpc_client::poller=off")
                }),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let talks_to_nodes = match &cli.command {
        Command::Node(_) | Command::Train(_) | Command::Cluster(_) => true,
        Command::Demo(args) => args.nodes.is_some(),
        _ => false,
    };
    if !talks_to_nodes {
        die_quietly_on_a_closed_pipe();
    }
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", printable(&err.to_string()));
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {}", printable(&cause.to_string()));
            }
            ExitCode::FAILURE
        }
    }
}

/// An error message as it may reach a terminal: errors quote file content (a CSV header, a
/// contract key), and a control character there (an ANSI escape) must not drive the terminal.
/// Line breaks and tabs stay: parser messages span lines.
fn printable(message: &str) -> String {
    message
        .chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// `fedpool simulate … | head -3`: a reader that stops reading ends the command, silently, as
/// it does `cat`. Rust ignores SIGPIPE so that a write fails instead, and `println!` panics on
/// that failure; the default action restores the Unix convention. Not for the commands that
/// run or talk to a node: a node must outlive a peer or caller that hangs up.
fn die_quietly_on_a_closed_pipe() {
    // SAFETY: called before any thread is spawned; SIG_DFL is a valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Some(home) = &cli.home
        && let Some(name) = match &cli.command {
            Command::Simulate(_) => Some("simulate"),
            Command::Privacy(_) => Some("privacy"),
            Command::Demo(_) => Some("demo"),
            _ => None,
        }
    {
        anyhow::bail!(
            "--home {} has no effect on `fedpool {name}`, which never reads a node's home (a simulation keeps its ledger with --ledger FILE)",
            home.display()
        );
    }
    let home = || Home::resolve(cli.home.as_deref());
    let ok = |r: anyhow::Result<()>| r.map(|()| ExitCode::SUCCESS);
    match cli.command {
        Command::Demo(args) => ok(demo::run(args)),
        Command::Simulate(args) => ok(simulate::run(*args)),
        Command::Init(args) => ok(cmd_models::init(home()?, args)),
        Command::Publish(args) => ok(cmd_models::publish(home()?, args)),
        Command::Models(args) => ok(cmd_models::models(home()?, args)),
        Command::Card(args) => ok(cmd_models::card(home()?, args)),
        Command::Data(command) => ok(cmd_consent::data(home()?, command)),
        Command::Consent(command) => ok(cmd_consent::consent(home()?, command)),
        Command::Policy(command) => ok(cmd_policy::policy(home()?, command)),
        Command::Ledger(command) => cmd_ledger::ledger(home()?, command),
        Command::Privacy(command) => ok(cmd_privacy::privacy(command)),
        Command::Rewards(args) => ok(cmd_rewards::rewards(home()?, args)),
        Command::Open(args) => ok(web::open(home()?, args)),
        Command::Release(args) => ok(cmd_release::release(home()?, args)),
        Command::Node(command) => ok(cmd_node::node(home()?, command)),
        Command::Cluster(command) => ok(cmd_cluster::cluster(command)),
        Command::Chain(command) => ok(cmd_chain::chain(home()?, command)),
        Command::Wallet(command) => ok(cmd_chain::wallet(home()?, command)),
        Command::Anchor(args) => ok(cmd_chain::anchor(home()?, args)),
        Command::Settle(args) => ok(cmd_chain::settle(home()?, args)),
        // No round completed is a failure a script can see.
        Command::Train(args) => cmd_node::train(home()?, args).map(|any| {
            if any {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }),
    }
}
