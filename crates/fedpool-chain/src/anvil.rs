//! A local EVM for tests: anvil (npm `@foundry-rs/anvil`, installed by `npm ci` at the
//! repository root) on loopback.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The private key of anvil's first well-known development account (public knowledge: for
/// local test chains only).
pub const DEV_ACCOUNT_0_KEY: &str =
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

/// The private key of anvil's second development account (public knowledge, like the first).
pub const DEV_ACCOUNT_1_KEY: &str =
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

/// A running anvil, killed when dropped.
pub struct Anvil {
    child: Child,
    port: u16,
}

/// Where the anvil binary is: `FEDPOOL_ANVIL`, else the npm package under the repository's
/// `node_modules`, else `anvil` on the PATH.
pub fn anvil_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("FEDPOOL_ANVIL") {
        return PathBuf::from(path);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let npm = root.join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    if npm.exists() {
        return npm;
    }
    PathBuf::from("anvil")
}

/// A loopback port free right now (bound, then released), for a chain that must come back on
/// the same port after a restart.
pub fn free_loopback_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

impl Anvil {
    /// Starts anvil on 127.0.0.1 (`port` 0: any free port). With `state`, the chain is loaded
    /// from that file if it exists and dumped to it every second and on exit, so a restarted
    /// anvil resumes (losing what the last second did, as a reorganisation would).
    pub fn start(port: u16, state: Option<&Path>) -> Anvil {
        let binary = anvil_binary();
        let mut command = Command::new(&binary);
        command
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(state) = state {
            command
                .arg("--state")
                .arg(state)
                .args(["--state-interval", "1"]);
        }
        let mut child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start anvil ({}): {e}; run `npm ci` at the repository root (it installs @foundry-rs/anvil) or set FEDPOOL_ANVIL",
                binary.display()
            )
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let started = Instant::now();
        let port = loop {
            let line = match lines.next() {
                Some(Ok(line)) => line,
                _ => panic!("anvil exited before it listened"),
            };
            if let Some(address) = line.strip_prefix("Listening on ") {
                let port = address
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.trim().parse().ok())
                    .expect("anvil prints host:port");
                break port;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "anvil did not listen within 30 s"
            );
        };
        // Keep draining its output so anvil never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.by_ref() {});
        Anvil { child, port }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its JSON-RPC URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills it at once (SIGKILL: no state dump on exit, as a crash).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
