//! Key files: a node's secret key on disk, readable by its owner only.
//!
//! The format is three lines of text:
//!
//! ```text
//! fedpool-key-v1
//! did:key:z6Mk…
//! <base58btc of the 32-byte Ed25519 secret key>
//! ```
//!
//! The DID line lets a reader check that the secret matches the identity it expects, and
//! lets `cat` show whose key it is. On unix the file is created with mode 0600 (never
//! written first and restricted afterwards, which would leave a window where others could
//! read it), and a file accessible by group or others is refused on load.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::{Did, Error, Keypair};

const HEADER: &str = "fedpool-key-v1";
/// A key file is ~110 bytes; anything much larger is not one.
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// Writes `keypair` to a new key file at `path` with mode 0600.
///
/// Refuses to replace an existing file unless `force`; with `force` the new key is written
/// to a fresh 0600 file next to `path` and renamed over it, so the old file's permissions are
/// not inherited and a crash leaves either the old or the new key, never half of one.
pub fn write_key_file(path: &Path, keypair: &Keypair, force: bool) -> Result<(), Error> {
    let secret = keypair.secret_bytes();
    let encoded_secret = Zeroizing::new(bs58::encode(secret.as_ref()).into_string());
    let content = Zeroizing::new(format!(
        "{HEADER}\n{}\n{}\n",
        keypair.did(),
        encoded_secret.as_str()
    ));
    let io_error = |action| {
        move |source| Error::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    };

    if !force {
        return write_secret_file(path, content.as_bytes());
    }

    let mut temp_name = path.as_os_str().to_owned();
    temp_name.push(".tmp");
    let temp_path = Path::new(&temp_name);
    // A stale temp file from an interrupted run is ours to replace.
    match fs::remove_file(temp_path) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(io_error("cannot remove stale temporary key file")(source)),
    }
    let mut file = create_owner_only(temp_path).map_err(io_error("cannot create key file"))?;
    file.write_all(content.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_error("cannot write key file"))?;
    drop(file);
    fs::rename(temp_path, path)
        .and_then(|()| sync_parent_dir(path))
        .map_err(io_error("cannot replace key file"))?;
    Ok(())
}

/// Replaces `path` with `bytes` atomically: writes a new file under an unpredictable name in
/// the same directory, created exclusively (`O_EXCL`: it never opens, let alone follows, a
/// file or symlink someone planted there), syncs it, then renames it over `path`.
pub fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let io_error = |action| {
        move |source| Error::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    };
    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix).map_err(|err| Error::Randomness {
        reason: err.to_string(),
    })?;
    let mut temp_name = path.as_os_str().to_owned();
    temp_name.push(format!(
        ".{}.tmp",
        suffix
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ));
    let temp_path = PathBuf::from(temp_name);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp_path)
        .map_err(io_error("cannot create a temporary file"))?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io_error("cannot write a temporary file"));
    drop(file);
    let result = written.and_then(|()| {
        fs::rename(&temp_path, path)
            .and_then(|()| sync_parent_dir(path))
            .map_err(io_error("cannot move the new file in place"))
    });
    if result.is_err() {
        let _ = fs::remove_file(&temp_path);
    }
    result
}

/// Makes a new directory entry durable (on unix a file's fsync does not cover its name).
pub(crate) fn sync_parent_dir(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Loads the key pair stored at `path`.
///
/// On unix, fails with [`Error::KeyFilePermissions`] if the file is accessible by group or
/// others. Checks that the secret key matches the DID written next to it.
pub fn read_key_file(path: &Path) -> Result<Keypair, Error> {
    let format_error = |reason: &str| Error::KeyFileFormat {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let bytes = read_secret_file(path)?;
    let content = std::str::from_utf8(&bytes).map_err(|_| format_error("not UTF-8 text"))?;

    let mut lines = content.lines();
    if lines.next() != Some(HEADER) {
        return Err(format_error("first line is not `fedpool-key-v1`"));
    }
    let did: Did = lines
        .next()
        .ok_or_else(|| format_error("missing DID line"))?
        .parse()
        .map_err(|err: Error| format_error(&format!("bad DID line: {err}")))?;
    let encoded_secret = lines
        .next()
        .ok_or_else(|| format_error("missing secret key line"))?;
    if lines.next().is_some() {
        return Err(format_error("unexpected lines after the secret key"));
    }
    let mut secret = Zeroizing::new([0u8; 32]);
    let n_bytes = bs58::decode(encoded_secret)
        .onto(secret.as_mut())
        .map_err(|_| format_error("secret key line is not 32 bytes of base58btc"))?;
    if n_bytes != 32 {
        return Err(format_error("secret key line is not 32 bytes of base58btc"));
    }
    let keypair = Keypair::from_secret_bytes(&secret);
    if keypair.did() != did {
        return Err(format_error(
            "the secret key does not match the DID line (file damaged or edited)",
        ));
    }
    Ok(keypair)
}

#[cfg(unix)]
fn create_owner_only(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_owner_only(path: &Path) -> std::io::Result<File> {
    // No unix permission bits here; the file inherits the directory's ACL.
    OpenOptions::new().write(true).create_new(true).open(path)
}

#[cfg(unix)]
fn check_owner_only(path: &Path, metadata: &fs::Metadata) -> Result<(), Error> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // SAFETY: geteuid has no preconditions and cannot fail.
    let user = unsafe { libc::geteuid() };
    if metadata.uid() != user {
        return Err(Error::KeyFileOwner {
            path: path.to_path_buf(),
            owner: metadata.uid(),
            user,
        });
    }
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::KeyFilePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_owner_only(_path: &Path, _metadata: &fs::Metadata) -> Result<(), Error> {
    Ok(())
}

/// Creates `path` (which must not exist) owner-only (0600) holding `content`: for other
/// secrets kept like the node key (an EVM wallet's key).
pub fn write_secret_file(path: &Path, content: &[u8]) -> Result<(), Error> {
    let io_error = |action| {
        move |source| Error::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    };
    let mut file = create_owner_only(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            Error::KeyFileExists {
                path: path.to_path_buf(),
            }
        } else {
            io_error("cannot create key file")(source)
        }
    })?;
    file.write_all(content)
        .and_then(|()| file.sync_all())
        .and_then(|()| sync_parent_dir(path))
        .map_err(io_error("cannot write key file"))
}

/// Reads a secret file written by [`write_secret_file`], refusing one another user owns or
/// others can read; the bytes are wiped when dropped.
pub fn read_secret_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, Error> {
    let io_error = |action| {
        move |source| Error::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    };
    let mut file = File::open(path).map_err(io_error("cannot open key file"))?;
    let metadata = file
        .metadata()
        .map_err(io_error("cannot read key file metadata"))?;
    check_owner_only(path, &metadata)?;
    if metadata.len() > MAX_KEY_FILE_BYTES {
        return Err(Error::KeyFileFormat {
            path: path.to_path_buf(),
            reason: "file is too large".into(),
        });
    }
    let mut content = Zeroizing::new(Vec::new());
    (&mut file)
        .take(MAX_KEY_FILE_BYTES)
        .read_to_end(&mut content)
        .map_err(io_error("cannot read key file"))?;
    Ok(content)
}
