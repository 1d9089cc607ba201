//! The node's local control socket: a Unix socket in the node's home (a 0700 directory, the
//! socket itself 0600), so only the owner's account can ask the node for its status or tell
//! it to train. One JSON request per connection; the node answers with JSON lines.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::mpsc;

use crate::Error;

/// The socket's file name in the home.
pub const SOCKET_NAME: &str = "node.sock";

/// What a local client asks the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlRequest {
    /// Peers, ledger, models, consents, rounds, ε.
    Status,
    /// Train a model this node published.
    Train {
        /// The model id.
        model: String,
        /// Rounds to run (default: the contract's).
        rounds: Option<usize>,
        /// A dataset registered on the publisher's node to evaluate each round on.
        eval: Option<String>,
    },
    /// Stop the node.
    Shutdown,
}

/// A request with the channel its answer lines go to.
pub struct ControlCall {
    /// The request.
    pub request: ControlRequest,
    /// Where to send answer lines; the connection closes when it is dropped.
    pub reply: mpsc::UnboundedSender<serde_json::Value>,
}

/// The socket path in `home`.
pub fn socket_path(home: &Path) -> PathBuf {
    home.join(SOCKET_NAME)
}

/// Listens on the home's socket and forwards each request to `calls`.
pub fn serve(home: &Path, calls: mpsc::UnboundedSender<ControlCall>) -> Result<PathBuf, Error> {
    let path = socket_path(home);
    let io = |source| Error::Io {
        path: path.clone(),
        source,
    };
    if path.exists() {
        // A live node answers; a socket left by a killed node does not.
        if UnixStream::connect(&path).is_ok() {
            return Err(Error::Refused(format!(
                "another node is running with this home ({} answers)",
                path.display()
            )));
        }
        std::fs::remove_file(&path).map_err(io)?;
    }
    let listener = UnixListener::bind(&path).map_err(io)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let calls = calls.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut line = String::new();
                let mut reader = tokio::io::BufReader::new(read.take(64 * 1024));
                if reader.read_line(&mut line).await.is_err() {
                    return;
                }
                let request: ControlRequest = match serde_json::from_str(line.trim()) {
                    Ok(request) => request,
                    Err(e) => {
                        let answer = serde_json::json!({"error": format!("bad request: {e}")});
                        let _ = write.write_all(format!("{answer}\n").as_bytes()).await;
                        return;
                    }
                };
                let (reply, mut answers) = mpsc::unbounded_channel();
                if calls.send(ControlCall { request, reply }).is_err() {
                    return;
                }
                while let Some(answer) = answers.recv().await {
                    if write
                        .write_all(format!("{answer}\n").as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    Ok(path)
}

/// Sends `request` to the node running in `home` and calls `on_line` with every answer line
/// until the node closes the connection.
pub fn call(
    home: &Path,
    request: &ControlRequest,
    mut on_line: impl FnMut(serde_json::Value) -> Result<(), Error>,
) -> Result<(), Error> {
    let path = socket_path(home);
    let mut stream = UnixStream::connect(&path).map_err(|e| {
        Error::Refused(format!(
            "no node is running with home {} ({e}); start one with `fedpool node run`",
            home.display()
        ))
    })?;
    let io = |source| Error::Io {
        path: path.clone(),
        source,
    };
    let line = serde_json::to_string(request).map_err(|e| Error::Malformed(e.to_string()))?;
    stream
        .write_all(format!("{line}\n").as_bytes())
        .map_err(io)?;
    for line in BufReader::new(stream).lines() {
        let line = line.map_err(io)?;
        let value = serde_json::from_str(&line)
            .map_err(|e| Error::Malformed(format!("the node answered {line:?}: {e}")))?;
        on_line(value)?;
    }
    Ok(())
}
