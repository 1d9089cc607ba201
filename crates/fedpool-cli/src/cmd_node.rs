//! `fedpool node run | status` and `fedpool train`: the long-running node and the commands
//! that talk to it through its control socket.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use fedpool_core::Contract;
use fedpool_data::Table;
use fedpool_ledger::content_hash;
use fedpool_node::control::{self, ControlRequest};
use fedpool_node::replay::Replay;
use fedpool_node::{Multiaddr, NodeConfig, NodeInfo, Protocol};
use fedpool_protocol::Stage;

use crate::home::{Home, RegisteredDataset};
use crate::load;
use crate::node::{self, Node};
use crate::report::{self, count};

/// The owner's consent policy as the running node applies it: read from the home each time,
/// so `fedpool policy set` takes effect without a restart.
struct HomePolicy {
    home: Home,
    /// Models already tried under each policy (see [`crate::cmd_policy::apply`]).
    looked_at: std::sync::Mutex<std::collections::HashSet<(fedpool_ledger::ModelId, String)>>,
}

impl fedpool_node::ConsentPolicyHook for HomePolicy {
    fn decide(
        &self,
        store: &mut fedpool_ledger::Store,
        keypair: &fedpool_ledger::Keypair,
        now_ms: u64,
    ) -> Result<Vec<String>, String> {
        let mut looked_at = self
            .looked_at
            .lock()
            .map_err(|_| "the policy's memory was poisoned by a panic".to_string())?;
        let applied = crate::cmd_policy::apply(&self.home, store, keypair, now_ms, &mut looked_at)
            .map_err(|e| format!("{e:#}"))?;
        Ok(applied
            .iter()
            .filter(|row| row.event.is_some())
            .map(crate::cmd_policy::describe)
            .collect())
    }
}

/// `fedpool node …`
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Run this node: join the network, replicate the ledger, answer rounds for the models
    /// it consented to, and train the models it publishes when asked (`fedpool train`).
    Run(RunArgs),
    /// Ask the running node for its peers, ledger heads, models, consents, rounds and ε.
    Status(StatusArgs),
    /// Stop the running node.
    Stop,
}

/// `fedpool node run`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Address to listen on (repeatable), e.g. /ip4/0.0.0.0/tcp/4001 or
    /// /ip4/0.0.0.0/udp/4001/quic-v1.
    #[arg(long, default_values_t = vec!["/ip4/0.0.0.0/tcp/0".to_string(), "/ip4/0.0.0.0/udp/0/quic-v1".to_string()])]
    listen: Vec<String>,
    /// A peer to connect to at start (repeatable), e.g. /ip4/127.0.0.1/tcp/4001/p2p/12D3….
    #[arg(long)]
    bootstrap: Vec<String>,
    /// Print one JSON line (DID, PeerId, addresses) once listening.
    #[arg(long)]
    json: bool,
    /// Seconds a publisher waits for a round's updates.
    #[arg(long, default_value_t = 60)]
    round_timeout: u64,
    /// Seconds between ledger head comparisons with peers.
    #[arg(long, default_value_t = 2.0)]
    sync_interval: f64,
    /// Largest round message accepted, in MiB (parameters travel in chunks; this bounds
    /// memory, not the transport).
    #[arg(long, default_value_t = 2048)]
    max_message_mib: u64,
    /// Find peers on the local network by mDNS (announces this node to the whole LAN; off
    /// unless given). mDNS announces only LAN addresses, so listen on one too, e.g.
    /// `--listen /ip4/0.0.0.0/tcp/0`.
    #[arg(long)]
    mdns: bool,
    /// Draw training, privacy and sampling randomness from a simulation plan's seeds (written
    /// by `cluster up --replay-simulation`) instead of the OS: for the test that the network
    /// computes what the simulation computes. Makes DP noise predictable; never with real data.
    #[arg(long, hide = true)]
    insecure_replay: Option<std::path::PathBuf>,
    /// Fault injection for tests: stop sending round messages from the first one of this
    /// secure-aggregation stage on (advertise-keys, share-keys, masked-input, consistency,
    /// unmasking), as a node killed there would.
    #[arg(long, hide = true, value_parser = parse_stage)]
    fault_freeze_before: Option<Stage>,
    /// Address of the owner's web page (`fedpool open` logs in). Port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    web: std::net::SocketAddr,
    /// Allow the web page on a non-loopback address (anyone who reaches it can try the token).
    #[arg(long)]
    web_allow_remote: bool,
    /// Do not serve the web page.
    #[arg(long, conflicts_with_all = ["web", "web_allow_remote"])]
    no_web: bool,
    /// Anchor the ledger's heads in the chain every this many seconds when they moved (needs
    /// wallet.key and chain.json in the home; see `fedpool anchor`).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    anchor_every: Option<u64>,
    /// The chain's JSON-RPC endpoint, with --anchor-every.
    #[arg(
        long,
        default_value = "http://127.0.0.1:8545",
        requires = "anchor_every"
    )]
    rpc: String,
}

fn parse_stage(name: &str) -> Result<Stage, String> {
    Ok(match name {
        "training" => Stage::Training,
        "advertise-keys" => Stage::AdvertiseKeys,
        "share-keys" => Stage::ShareKeys,
        "masked-input" => Stage::MaskedInput,
        "consistency" => Stage::ConsistencyCheck,
        "unmasking" => Stage::Unmasking,
        other => return Err(format!("no stage named {other:?}")),
    })
}

/// `fedpool node status`
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the status as JSON.
    #[arg(long)]
    json: bool,
}

/// `fedpool train`
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The model (id or unique prefix, or name) this node published.
    model: String,
    /// Rounds to run (default: the contract's).
    #[arg(long)]
    rounds: Option<usize>,
    /// A dataset registered on this node to evaluate each round on.
    #[arg(long)]
    eval: Option<String>,
    /// Print each round as a JSON line.
    #[arg(long)]
    json: bool,
}

/// Reads the files the owner registered, only for training and evaluation.
struct RegisteredData {
    home: Home,
}

impl RegisteredData {
    fn load(&self, contract: &Contract, dataset: &RegisteredDataset) -> Result<Table, String> {
        let bytes = std::fs::read(&dataset.path)
            .map_err(|e| format!("cannot read {}: {e}", dataset.path.display()))?;
        if content_hash(&bytes) != dataset.fingerprint {
            return Err(format!(
                "{} changed since it was registered as \"{}\"; register it again (and consent again)",
                dataset.path.display(),
                dataset.name
            ));
        }
        load::DataSource::Csv(dataset.path.clone())
            .load(&contract.schema, &[])
            .map_err(|e| format!("{e:#}"))
    }
}

impl fedpool_node::DataSource for RegisteredData {
    fn training_data(&self, contract: &Contract, fingerprint: &str) -> Result<Table, String> {
        let datasets = self.home.datasets().map_err(|e| format!("{e:#}"))?;
        let dataset = datasets
            .iter()
            .find(|d| d.fingerprint == fingerprint)
            .ok_or_else(|| format!("no registered dataset has fingerprint {fingerprint}"))?;
        self.load(contract, dataset)
    }

    fn evaluation_data(&self, contract: &Contract, name: &str) -> Result<Table, String> {
        let dataset = self.home.dataset(name).map_err(|e| format!("{e:#}"))?;
        self.load(contract, &dataset)
    }
}

/// `fedpool node …`
pub fn node(home: Home, command: NodeCommand) -> Result<()> {
    match command {
        NodeCommand::Run(args) => run(home, args),
        NodeCommand::Status(args) => status(&home, args),
        NodeCommand::Stop => {
            control::call(home.dir(), &ControlRequest::Shutdown, |_| Ok(()))?;
            eprintln!("node stopping");
            Ok(())
        }
    }
}

fn run(home: Home, args: RunArgs) -> Result<()> {
    let node = Node::open(home)?;
    let parse = |list: &[String], what: &str| -> Result<Vec<fedpool_node::Multiaddr>> {
        list.iter()
            .map(|a| {
                a.parse()
                    .with_context(|| format!("{what} \"{a}\" is not a multiaddr"))
            })
            .collect()
    };
    if !(args.sync_interval > 0.0 && args.sync_interval.is_finite()) {
        bail!("--sync-interval must be a positive number of seconds");
    }
    let listen = parse(&args.listen, "--listen")?;
    if args.mdns && listen.iter().all(is_loopback) {
        tracing::warn!(
            "--mdns announces only LAN addresses and this node listens on loopback only: \
             nobody will find it; add e.g. --listen /ip4/0.0.0.0/tcp/0"
        );
    }
    if let Some(stage) = args.fault_freeze_before {
        tracing::warn!(
            "fault injection: this node will stop sending round messages before {stage:?} (for tests)"
        );
    }
    let config = NodeConfig {
        home: node.home.dir().to_path_buf(),
        keypair: node.keypair.clone(),
        ledger_path: node.home.ledger_path(),
        network: node.store.network().clone(),
        listen,
        bootstrap: parse(&args.bootstrap, "--bootstrap")?,
        data: Arc::new(RegisteredData {
            home: node.home.clone(),
        }),
        round_timeout_ms: args.round_timeout.saturating_mul(1000),
        sync_interval: Duration::from_secs_f64(args.sync_interval),
        max_message_bytes: args.max_message_mib.saturating_mul(1 << 20),
        wiretap: None,
        replay: match &args.insecure_replay {
            Some(path) => {
                tracing::warn!(
                    "replaying a simulation's seeds from {}: this node's noise and masks are predictable",
                    path.display()
                );
                Some(Arc::new(Replay::load(path)?))
            }
            None => None,
        },
        freeze_before: args.fault_freeze_before,
        mdns: args.mdns,
        consent_policy: Some(Arc::new(HomePolicy {
            home: node.home.clone(),
            looked_at: Default::default(),
        })),
    };
    let home = node.home.clone();
    drop(node);
    let json = args.json;
    let web = (!args.no_web).then_some(crate::web::WebConfig {
        addr: args.web,
        allow_remote: args.web_allow_remote,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let anchoring = args.anchor_every.map(|seconds| {
        (
            crate::cmd_chain::RpcArgs {
                rpc: args.rpc.clone(),
                retry_for: seconds.min(60),
            },
            Duration::from_secs(seconds),
        )
    });
    runtime.block_on(async move {
        if let Some((rpc, every)) = anchoring {
            tokio::spawn(crate::cmd_chain::anchor_periodically(
                home.clone(),
                rpc,
                every,
            ));
        }
        let page: Option<(String, crate::web::Secret)> = match web {
            Some(web) => {
                let (addr, server) = crate::web::bind(home.clone(), web).await?;
                tokio::spawn(async move {
                    if let Err(e) = server.await {
                        tracing::error!("the web page stopped: {e}");
                    }
                });
                Some((format!("http://{addr}/"), crate::web::Secret::load(&home)?))
            }
            None => None,
        };
        let on_ready = move |info: &NodeInfo| print_ready(info, json, page.as_ref());
        fedpool_node::run(config, on_ready, shutdown_signal())
            .await
            .map_err(anyhow::Error::from)
    })?;
    Ok(())
}

/// Prints the ready line; in the human form, with the web page's token (the JSON form, read by
/// programs, names only the page: the token is in the home).
fn print_ready(info: &NodeInfo, json: bool, page: Option<&(String, crate::web::Secret)>) {
    use std::io::Write;
    let listen: Vec<String> = info
        .listen
        .iter()
        .map(|a| format!("{a}/p2p/{}", info.peer_id))
        .collect();
    let mut out = std::io::stdout().lock();
    if json {
        let line = serde_json::json!({
            "did": info.did.to_string(),
            "peer_id": info.peer_id.to_string(),
            "listen": listen,
            "control_socket": info.control_socket,
            "pid": std::process::id(),
            "web": page.map(|(url, _)| url),
        });
        let _ = writeln!(out, "{line}");
    } else {
        let _ = writeln!(out, "node {}", info.did);
        let _ = writeln!(out, "peer {}", info.peer_id);
        for addr in &listen {
            let _ = writeln!(out, "listening on {addr}");
        }
        if let Some((url, secret)) = page {
            let _ = writeln!(
                out,
                "web page {url} (token {}; `fedpool open` logs you in)",
                secret.token()
            );
        }
    }
    let _ = out.flush();
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn status(home: &Home, args: StatusArgs) -> Result<()> {
    control::call(home.dir(), &ControlRequest::Status, |status| {
        if args.json {
            println!("{status}");
            return Ok(());
        }
        if let Some(error) = status.get("error") {
            println!("error: {error}");
            return Ok(());
        }
        let field = |path: &[&str]| {
            let mut v = &status;
            for p in path {
                v = &v[*p];
            }
            match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            }
        };
        println!("node    {}", field(&["did"]));
        println!("peer    {}", field(&["peer_id"]));
        println!(
            "peers   {} connected, {} blocked",
            count(status["peers"].as_array().map_or(0, Vec::len), "peer"),
            status["blocked"].as_array().map_or(0, Vec::len)
        );
        println!(
            "ledger  {} by {} (heads {})",
            count(status["ledger"]["events"].as_u64().unwrap_or(0), "event"),
            count(status["ledger"]["authors"].as_u64().unwrap_or(0), "author"),
            &field(&["ledger", "heads_digest"])[..16.min(field(&["ledger", "heads_digest"]).len())]
        );
        for model in status["models"].as_array().into_iter().flatten() {
            println!(
                "model   {} {}{}",
                model["model"].as_str().unwrap_or_default(),
                model["name"].as_str().unwrap_or_default(),
                if model["mine"].as_bool() == Some(true) {
                    " (published here)"
                } else {
                    ""
                }
            );
        }
        for consent in status["consents"].as_array().into_iter().flatten() {
            println!("consent {}", consent["model"].as_str().unwrap_or_default());
        }
        if !status["training"].is_null() {
            println!(
                "training {} ({} done)",
                field(&["training", "model"]),
                count(
                    status["training"]["rounds_completed"].as_u64().unwrap_or(0),
                    "round"
                )
            );
        }
        for p in status["privacy"].as_array().into_iter().flatten() {
            println!(
                "ε spent {:.4} on {} ({} trained)",
                p["epsilon"].as_f64().unwrap_or(0.0),
                p["model"].as_str().unwrap_or_default(),
                count(p["rounds_trained"].as_u64().unwrap_or(0), "round")
            );
        }
        Ok(())
    })?;
    Ok(())
}

/// `fedpool train`: asks this home's running node to train a model it published.
pub fn train(home: Home, args: TrainArgs) -> Result<bool> {
    let model = {
        let node = Node::open(home.clone())?;
        node::find_model(&node.store, &args.model)?.id().clone()
    };
    let request = ControlRequest::Train {
        model: model.as_str().to_string(),
        rounds: args.rounds,
        eval: args.eval.clone(),
    };
    let mut completed = 0;
    let mut failure = None;
    let mut progress: Option<indicatif::ProgressBar> = None;
    control::call(home.dir(), &request, |line| {
        if args.json {
            println!("{line}");
            return match line.get("error") {
                Some(error) => {
                    failure = Some(error.as_str().unwrap_or_default().to_string());
                    Ok(())
                }
                None => {
                    completed += usize::from(line["event"] == "completed");
                    Ok(())
                }
            };
        }
        if let Some(error) = line.get("error") {
            failure = Some(error.as_str().unwrap_or_default().to_string());
            return Ok(());
        }
        // Round lines go above the bar (or plainly, without a terminal).
        let say = |progress: &Option<indicatif::ProgressBar>, text: String| match progress {
            Some(bar) => bar.println(text),
            None => println!("{text}"),
        };
        let epsilon = line["epsilon"]
            .as_f64()
            .map(|e| format!(", ε {e:.3}"))
            .unwrap_or_default();
        match line["event"].as_str() {
            Some("training") => {
                progress = report::round_bar(line["rounds"].as_u64().unwrap_or(0), true);
            }
            Some("statistics") => say(
                &progress,
                format!(
                    "statistics phase: {} aggregated, {} dropped{epsilon}",
                    count(line["contributors"].as_u64().unwrap_or(0), "node"),
                    line["dropped"]
                ),
            ),
            Some("completed") => {
                completed += 1;
                let accuracy = line["accuracy"]
                    .as_f64()
                    .map(|a| format!(", accuracy {a:.4}"))
                    .unwrap_or_default();
                say(
                    &progress,
                    format!(
                        "round {}: {}, {} dropped{accuracy}{epsilon}",
                        line["round"],
                        count(line["contributors"].as_u64().unwrap_or(0), "contributor"),
                        line["dropped"]
                    ),
                );
                if let Some(bar) = &progress {
                    bar.inc(1);
                    bar.set_message(format!("{}{epsilon}", accuracy.trim_start_matches(", ")));
                }
            }
            Some("failed") => say(
                &progress,
                format!(
                    "{} failed: {}",
                    if line["round"] == 0 {
                        "the statistics phase".to_string()
                    } else {
                        format!("round {}", line["round"])
                    },
                    line["reason"].as_str().unwrap_or_default()
                ),
            ),
            Some("finished") => {
                if let Some(bar) = progress.take() {
                    bar.finish_and_clear();
                }
                println!(
                    "finished: {} committed, model {}",
                    count(line["rounds_completed"].as_u64().unwrap_or(0), "round"),
                    line["global_hash"].as_str().unwrap_or_default()
                );
            }
            _ => {}
        }
        Ok(())
    })?;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    if let Some(why) = failure {
        bail!("{why}");
    }
    Ok(completed > 0)
}

/// Whether an address reaches only this machine.
fn is_loopback(addr: &Multiaddr) -> bool {
    addr.iter().any(|part| match part {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}
