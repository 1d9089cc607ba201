//! `fedpool cluster up | down`: a local network of real node processes on loopback, one home
//! per node, for users trying the network and for tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use fedpool_data::Partition;
use fedpool_node::control::{self, ControlRequest};
use fedpool_node::replay::Replay;
use fedpool_runtime::{LedgerChoice, SimulationOptions, SimulationPlan};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::load;
use crate::report;

/// `fedpool cluster …`
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Start a publisher and N owner nodes on loopback, each with its own home, identity,
    /// share of the data and consent decision; returns once all are connected.
    Up(UpArgs),
    /// Stop every node of a cluster.
    Down(DownArgs),
}

/// `fedpool cluster up`
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Directory for the nodes' homes and logs.
    #[arg(long)]
    pub dir: PathBuf,
    /// Number of owner nodes.
    #[arg(long, default_value_t = 4)]
    pub nodes: usize,
    /// The contract the publisher publishes.
    #[arg(long)]
    pub contract: PathBuf,
    /// The rows to share out: a CSV path or bundled:NAME (default: the bundled set the
    /// contract is named after).
    #[arg(long)]
    pub data: Option<String>,
    /// How rows are split across owners: iid, dirichlet:ALPHA, shards:K, column:NAME.
    #[arg(long, default_value = "iid")]
    pub partition: String,
    /// Share of owners who consent.
    #[arg(long, default_value_t = 1.0)]
    pub consent_rate: f64,
    /// Seed of the split, the partition and the consent decisions.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Seconds the publisher waits for a round's updates.
    #[arg(long, default_value_t = 30)]
    pub round_timeout: u64,
    /// Print the cluster (model id, each node's role, home, DID and PID) as JSON.
    #[arg(long)]
    pub json: bool,
    /// Give every node the in-process simulation's seeds for this seed (training, privacy
    /// noise, sampling, the initial model), so the cluster computes exactly what `fedpool
    /// simulate` computes: for tests. Noise becomes predictable; never with real data.
    #[arg(long, hide = true)]
    pub replay_simulation: bool,
}

/// `fedpool cluster down`
#[derive(Debug, Args)]
pub struct DownArgs {
    /// The directory `cluster up` used.
    #[arg(long)]
    pub dir: PathBuf,
}

/// One node of a cluster, as `cluster.json` records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterNode {
    /// `publisher` or `owner`.
    pub role: String,
    /// Its home.
    pub home: PathBuf,
    /// Its DID.
    pub did: String,
    /// Its PeerId.
    pub peer_id: String,
    /// Its process.
    pub pid: u32,
    /// Its address.
    pub address: String,
    /// Whether it consented (owners).
    pub consented: bool,
}

/// A running cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cluster {
    /// The published model.
    pub model: String,
    /// Every node, the publisher first.
    pub nodes: Vec<ClusterNode>,
}

fn fedpool(home: &Path, args: &[&str]) -> Result<String> {
    let exe = std::env::current_exe().context("cannot find the fedpool binary")?;
    let out = Command::new(exe)
        .arg("--home")
        .arg(home)
        .args(args)
        .output()
        .context("cannot run fedpool")?;
    if !out.status.success() {
        bail!(
            "fedpool {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Starts `fedpool node run` for `home` in the background; returns its ready line.
fn start_node(
    home: &Path,
    bootstrap: Option<&str>,
    round_timeout: u64,
    replay: Option<&Replay>,
) -> Result<Value> {
    let exe = std::env::current_exe().context("cannot find the fedpool binary")?;
    let ready_path = home.join("ready.json");
    let _ = std::fs::remove_file(&ready_path);
    let ready = std::fs::File::create(&ready_path)
        .with_context(|| format!("cannot create {}", ready_path.display()))?;
    let log_path = home.join("node.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    let mut command = Command::new(exe);
    command
        .arg("--home")
        .arg(home)
        .args(["node", "run", "--json", "--listen", "/ip4/127.0.0.1/tcp/0"])
        .args(["--round-timeout", &round_timeout.to_string()])
        .stdin(Stdio::null())
        .stdout(ready)
        .stderr(log);
    if std::env::var_os("FEDPOOL_LOG").is_none() {
        command.env("FEDPOOL_LOG", "info");
    }
    if let Some(addr) = bootstrap {
        command.args(["--bootstrap", addr]);
    }
    if let Some(replay) = replay {
        let path = home.join("replay.json");
        std::fs::write(&path, serde_json::to_string(replay)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        command.arg("--insecure-replay").arg(path);
    }
    let mut child = command.spawn().context("cannot start a node")?;
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(&ready_path).unwrap_or_default();
        if let Some(line) = text.lines().next() {
            return serde_json::from_str(line)
                .with_context(|| format!("{} printed {line:?}", home.display()));
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!(
                "the node in {} exited ({status}); see {}",
                home.display(),
                log_path.display()
            );
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the node in {} did not start within 30 s", home.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn status(home: &Path) -> Result<Value> {
    let mut out = Value::Null;
    control::call(home, &ControlRequest::Status, |v| {
        out = v;
        Ok(())
    })?;
    Ok(out)
}

fn wait_until(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let started = Instant::now();
    while !check()? {
        if started.elapsed() > timeout {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Writes the data lines `rows` (0-based, after the header) as a CSV file.
fn write_rows(path: &Path, header: &str, lines: &[&str], rows: &[usize]) -> Result<()> {
    let mut text = String::with_capacity(rows.len() * 64);
    text.push_str(header);
    text.push('\n');
    for &row in rows {
        text.push_str(lines[row]);
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// `fedpool cluster up`: returns the cluster once every node is connected and every consent
/// has reached the publisher. A cluster that fails to come up is stopped again.
pub fn up(args: &UpArgs) -> Result<Cluster> {
    let result = start_cluster(args);
    if result.is_err() && args.dir.join("cluster.json").exists() {
        let _ = down(&args.dir);
    }
    result
}

fn start_cluster(args: &UpArgs) -> Result<Cluster> {
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    if !(0.0..=1.0).contains(&args.consent_rate) {
        bail!(
            "--consent-rate must be in [0, 1], got {}",
            args.consent_rate
        );
    }
    let state = args.dir.join("cluster.json");
    if state.exists() {
        bail!(
            "{} holds a cluster already; stop it with `fedpool cluster down --dir {}`",
            args.dir.display(),
            args.dir.display()
        );
    }
    let contract = load::contract(&args.contract)?;
    let source = match &args.data {
        Some(data) => load::DataSource::parse(data)?,
        None => load::DataSource::default_for(&args.contract)?,
    };
    let partition: Partition = args.partition.parse()?;
    let keep: Vec<&str> = match &partition {
        Partition::Column { name } => vec![name.as_str()],
        _ => Vec::new(),
    };
    let table = source.load(&contract.schema, &keep)?;
    let text = source.csv_text()?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().context("the data has no header")?;
    let lines: Vec<&str> = lines.collect();
    if lines.len() != table.n_rows() {
        bail!(
            "{} has {} data lines but {} rows: quoted line breaks cannot be split by line",
            source.describe(),
            lines.len(),
            table.n_rows()
        );
    }
    // The simulation's split, partition and consent decisions, from the same seed.
    let mut options = SimulationOptions::new(args.nodes, partition, args.seed);
    options.consent_rate = args.consent_rate;
    options.ledger = LedgerChoice::Off;
    let plan = SimulationPlan::draw(&contract, &table, &options)?;
    let shares = &plan.client_rows;
    let decisions = &plan.decisions;

    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let contract_path = std::fs::canonicalize(&args.contract)?;
    let publisher_home = args.dir.join("publisher");
    fedpool(&publisher_home, &["init"])?;
    let eval_path = publisher_home.join("eval.csv");
    write_rows(&eval_path, header, &lines, &plan.test_rows)?;
    fedpool(
        &publisher_home,
        &["data", "add", "eval", &eval_path.display().to_string()],
    )?;
    let model = fedpool(
        &publisher_home,
        &["publish", &contract_path.display().to_string()],
    )?;
    // Homes, processes, then consents: three steps per owner, on a terminal.
    let progress = report::step_bar(3 * shares.len() as u64, !args.json);
    let step = |what: &str| {
        if let Some(bar) = &progress {
            bar.set_message(what.to_string());
            bar.inc(1);
        }
    };
    let mut owners = Vec::with_capacity(shares.len());
    for (i, rows) in shares.iter().enumerate() {
        step("preparing owner homes");
        let home = args.dir.join(format!("owner{}", i + 1));
        let did = fedpool(&home, &["init"])?;
        let data_path = home.join("data.csv");
        write_rows(&data_path, header, &lines, rows)?;
        fedpool(
            &home,
            &["data", "add", "mine", &data_path.display().to_string()],
        )?;
        owners.push((home, did));
    }
    let replay = |replay: Replay| args.replay_simulation.then_some(replay);
    let publisher_replay = replay(Replay {
        publisher_seed: Some(plan.publisher_seed),
        initial: Some(plan.initial.clone()),
        clients: owners.iter().map(|(_, did)| did.clone()).collect(),
        ..Replay::default()
    });
    let ready = start_node(
        &publisher_home,
        None,
        args.round_timeout,
        publisher_replay.as_ref(),
    )?;
    let bootstrap = ready["listen"][0]
        .as_str()
        .context("the publisher has no address")?
        .to_string();
    let node_of = |role: &str, home: &Path, ready: &Value, consented: bool| ClusterNode {
        role: role.into(),
        home: home.to_path_buf(),
        did: ready["did"].as_str().unwrap_or_default().into(),
        peer_id: ready["peer_id"].as_str().unwrap_or_default().into(),
        pid: ready["pid"].as_u64().unwrap_or_default() as u32,
        address: ready["listen"][0].as_str().unwrap_or_default().into(),
        consented,
    };
    let mut cluster = Cluster {
        model: model.clone(),
        nodes: vec![node_of("publisher", &publisher_home, &ready, false)],
    };
    // Written as soon as a process runs, so `cluster down` can stop a half-started cluster.
    let save = |cluster: &Cluster| -> Result<()> {
        std::fs::write(&state, serde_json::to_string_pretty(cluster)?)
            .with_context(|| format!("cannot write {}", state.display()))
    };
    save(&cluster)?;
    for (i, (home, _)) in owners.iter().enumerate() {
        let owner_replay = replay(Replay {
            participant_seed: Some(plan.client_seeds[i]),
            clients: owners.iter().map(|(_, did)| did.clone()).collect(),
            ..Replay::default()
        });
        step("starting owner nodes");
        let ready = start_node(
            home,
            Some(&bootstrap),
            args.round_timeout,
            owner_replay.as_ref(),
        )?;
        cluster
            .nodes
            .push(node_of("owner", home, &ready, decisions[i]));
        save(&cluster)?;
    }
    let timeout = Duration::from_secs(60 + shares.len() as u64);
    for node in cluster.nodes.iter().filter(|n| n.role == "owner") {
        step("granting consents");
        wait_until("the publication to reach every owner", timeout, || {
            Ok(status(&node.home)?["models"]
                .as_array()
                .is_some_and(|m| !m.is_empty()))
        })?;
        if node.consented {
            fedpool(&node.home, &["consent", "grant", &model, "--data", "mine"])?;
        }
    }
    let n_consenting = decisions.iter().filter(|d| **d).count();
    wait_until("every consent to reach the publisher", timeout, || {
        Ok(status(&publisher_home)?["ledger"]["authors"] == n_consenting as u64 + 1)
    })?;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    Ok(cluster)
}

/// `fedpool cluster down`: asks each node to stop, then waits for its process.
pub fn down(dir: &Path) -> Result<usize> {
    let state = dir.join("cluster.json");
    let text = std::fs::read_to_string(&state)
        .with_context(|| format!("no cluster in {} (no cluster.json)", dir.display()))?;
    let cluster: Cluster = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a cluster file", state.display()))?;
    let mut stopped = 0;
    for node in &cluster.nodes {
        if control::call(&node.home, &ControlRequest::Shutdown, |_| Ok(())).is_ok() {
            stopped += 1;
        }
    }
    let alive = |pid: u32| Path::new(&format!("/proc/{pid}")).exists();
    let started = Instant::now();
    while cluster.nodes.iter().any(|n| alive(n.pid)) && started.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::remove_file(&state).with_context(|| format!("cannot remove {}", state.display()))?;
    Ok(stopped)
}

/// `fedpool cluster …`
pub fn cluster(command: ClusterCommand) -> Result<()> {
    match command {
        ClusterCommand::Up(args) => {
            let cluster = up(&args)?;
            if args.json {
                println!("{}", serde_json::to_string(&cluster)?);
            } else {
                println!("model {}", cluster.model);
                for node in &cluster.nodes {
                    println!(
                        "{:<9} pid {:<7} {} {}{}",
                        node.role,
                        node.pid,
                        node.home.display(),
                        node.did,
                        if node.role == "owner" && !node.consented {
                            " (refused)"
                        } else {
                            ""
                        }
                    );
                }
                println!(
                    "train with: fedpool --home {} train {} --eval eval",
                    cluster.nodes[0].home.display(),
                    cluster.model
                );
            }
            Ok(())
        }
        ClusterCommand::Down(args) => {
            let n = down(&args.dir)?;
            eprintln!("stopped {n} nodes");
            Ok(())
        }
    }
}
