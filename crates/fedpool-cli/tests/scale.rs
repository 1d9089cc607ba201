//! The scale run: 100 owner processes and a publisher on loopback train the digits model
//! with secure aggregation for 20 rounds; a node joining afterwards catches up the ledger.
//! Slow (minutes on two cores), so ignored by default; the README names the command:
//!
//! ```text
//! cargo nextest run --release -p fedpool-cli --run-ignored only -E 'test(hundred)' --no-capture
//! ```
//!
//! It prints the round time, bytes each participant sends and receives per round, resident
//! memory per node and the late joiner's sync time, and fails if a round does not complete
//! with most owners, if the transport's framing costs more than 10% over the encoded
//! messages, or if the late joiner's ledger does not converge.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_fedpool");
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
const NETWORK: &str = "fedpool-scale-net";
const OWNERS: usize = 100;
const ROUNDS: usize = 20;

fn fedpool(home: Option<&Path>, args: &[&str]) -> String {
    let mut command = Command::new(BIN);
    if let Some(home) = home {
        command.arg("--home").arg(home);
    }
    let out = command
        .args(args)
        .env("FEDPOOL_NETWORK", NETWORK)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fedpool {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn status(home: &Path) -> Value {
    serde_json::from_str(&fedpool(Some(home), &["node", "status", "--json"])).unwrap()
}

/// Resident memory of a process, in MiB.
fn rss_mib(pid: u64) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Stops the cluster (and the late joiner) however the test ends.
struct Teardown {
    dir: PathBuf,
    joiner: Option<Child>,
}

impl Drop for Teardown {
    fn drop(&mut self) {
        if let Some(child) = &mut self.joiner {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new(BIN)
            .args(["cluster", "down", "--dir"])
            .arg(&self.dir)
            .env("FEDPOOL_NETWORK", NETWORK)
            .output();
    }
}

#[test]
#[ignore = "100 processes for several minutes; run by the command in the README"]
fn a_hundred_processes_train_digits_with_secure_aggregation() {
    let work = tempfile::tempdir().unwrap();
    // The digits contract with secure aggregation (and no DP noise, so the rounds measure
    // the protocol, not the privacy accountant).
    let digits = std::fs::read_to_string(format!("{ROOT}/contracts/digits.toml")).unwrap();
    let secure = digits.replace(
        "clip_norm = 0.0\nnoise_multiplier = 0.0\nsecure_aggregation = false",
        "clip_norm = 20.0\nnoise_multiplier = 0.0\nsecure_aggregation = true",
    );
    assert_ne!(
        secure, digits,
        "contracts/digits.toml changed its [privacy] section"
    );
    let contract = work.path().join("digits_secure.toml");
    std::fs::write(&contract, secure).unwrap();

    let dir = work.path().join("cluster");
    let mut teardown = Teardown {
        dir: dir.clone(),
        joiner: None,
    };
    let started = Instant::now();
    let nodes = OWNERS.to_string();
    let cluster: Value = serde_json::from_str(&fedpool(
        None,
        &[
            "cluster",
            "up",
            "--dir",
            dir.to_str().unwrap(),
            "--nodes",
            &nodes,
            "--contract",
            contract.to_str().unwrap(),
            "--seed",
            "42",
            "--round-timeout",
            "120",
            "--json",
        ],
    ))
    .unwrap();
    let up_seconds = started.elapsed().as_secs_f64();
    let model = cluster["model"].as_str().unwrap().to_string();
    let nodes = cluster["nodes"].as_array().unwrap().clone();
    let publisher = PathBuf::from(nodes[0]["home"].as_str().unwrap());
    let owners = &nodes[1..];
    assert_eq!(owners.len(), OWNERS);

    let rounds = ROUNDS.to_string();
    let out = fedpool(
        Some(&publisher),
        &[
            "train", &model, "--rounds", &rounds, "--eval", "eval", "--json",
        ],
    );
    let completed: Vec<Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["event"] == "completed")
        .collect();
    assert_eq!(completed.len(), ROUNDS, "{out}");
    for round in &completed {
        assert!(
            round["contributors"].as_u64().unwrap() >= (OWNERS as u64 * 9) / 10,
            "{round}"
        );
    }
    let mut round_ms: Vec<f64> = completed
        .iter()
        .map(|r| r["round_ms"].as_f64().unwrap())
        .collect();
    let final_accuracy = completed.last().unwrap()["accuracy"].as_f64().unwrap();

    // Traffic and memory, per owner.
    let mut sent = Vec::new();
    let mut received = Vec::new();
    let mut payload = Vec::new();
    let mut rss = Vec::new();
    for owner in owners {
        let home = PathBuf::from(owner["home"].as_str().unwrap());
        let traffic = status(&home)["traffic"].clone();
        sent.push(traffic["round_bytes_sent"].as_f64().unwrap() / ROUNDS as f64);
        received.push(traffic["round_bytes_received"].as_f64().unwrap() / ROUNDS as f64);
        payload.push(traffic["round_payload_bytes"].as_f64().unwrap() / ROUNDS as f64);
        rss.push(rss_mib(owner["pid"].as_u64().unwrap()));
    }
    let framing: Vec<f64> = sent.iter().zip(&payload).map(|(s, p)| s / p).collect();
    let publisher_rss = rss_mib(nodes[0]["pid"].as_u64().unwrap());
    let max_rss = rss.iter().copied().fold(0.0, f64::max);

    // A node that joins after round 20 catches up the whole ledger.
    let joiner_home = work.path().join("late");
    fedpool(Some(&joiner_home), &["init"]);
    let target = status(&publisher)["ledger"].clone();
    let joined = Instant::now();
    let mut child = Command::new(BIN)
        .arg("--home")
        .arg(&joiner_home)
        .args(["node", "run", "--json", "--listen", "/ip4/127.0.0.1/tcp/0"])
        .args(["--bootstrap", nodes[0]["address"].as_str().unwrap()])
        .args(["--sync-interval", "0.5"])
        .env("FEDPOOL_NETWORK", NETWORK)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    teardown.joiner = Some(child);
    loop {
        let ledger = status(&joiner_home)["ledger"].clone();
        if ledger["heads_digest"] == target["heads_digest"] {
            break;
        }
        assert!(
            joined.elapsed() < Duration::from_secs(120),
            "the late joiner has {} of {} events after 120 s",
            ledger["events"],
            target["events"]
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let sync_seconds = joined.elapsed().as_secs_f64();
    let verify = fedpool(Some(&joiner_home), &["ledger", "verify"]);
    assert!(verify.contains("OK"), "{verify}");

    let report = json!({
        "owners": OWNERS,
        "rounds": ROUNDS,
        "cluster_up_s": up_seconds,
        "round_ms_median": median(&mut round_ms),
        "round_ms_max": round_ms.last(),
        "final_accuracy": final_accuracy,
        "bytes_sent_per_participant_per_round_median": median(&mut sent),
        "bytes_received_per_participant_per_round_median": median(&mut received),
        "encoded_messages_per_participant_per_round_median": median(&mut payload.clone()),
        "framing_overhead_max": framing.iter().copied().fold(0.0, f64::max),
        "owner_rss_mib_median": median(&mut rss),
        "owner_rss_mib_max": max_rss,
        "publisher_rss_mib": publisher_rss,
        "ledger_events": target["events"],
        "late_joiner_sync_s": sync_seconds,
    });
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    assert!(
        framing.iter().all(|f| *f <= 1.1),
        "framing above 10%: {report}"
    );
}
