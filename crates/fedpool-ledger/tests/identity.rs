//! DIDs, event ids, network ids and key files.

use std::path::Path;

use fedpool_ledger::*;

/// Parses `input` as a DID and checks the error variant's name and a message fragment.
#[track_caller]
fn check_did_error(input: &str, variant: &str, message_part: &str) {
    let err = input.parse::<Did>().unwrap_err();
    let debug = format!("{err:?}");
    assert!(
        debug.starts_with(variant),
        "{input}: expected {variant}, got {debug}"
    );
    let message = err.to_string();
    assert!(message.contains(message_part), "{input}: {message}");
}

#[test]
fn did_round_trips() {
    for seed in 0..50 {
        let did = Keypair::insecure_from_seed(seed).did();
        let text = did.to_string();
        assert!(text.starts_with("did:key:z6Mk"), "{text}");
        assert_eq!(text.parse::<Did>().unwrap(), did);
        assert_eq!(Did::from_public_key(did.public_key()).unwrap(), did);
        let json = serde_json::to_string(&did).unwrap();
        assert_eq!(serde_json::from_str::<Did>(&json).unwrap(), did);
    }
    // The W3C did:key specification's example key.
    let example = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK";
    assert_eq!(example.parse::<Did>().unwrap().to_string(), example);
}

#[test]
fn did_errors_say_what_is_wrong() {
    let good = Keypair::insecure_from_seed(1).did().to_string();
    let encoded = &good["did:key:z".len()..];
    let bytes = bs58::decode(encoded).into_vec().unwrap();
    let reencode = |bytes: &[u8]| format!("did:key:z{}", bs58::encode(bytes).into_string());

    check_did_error("", "DidPrefix", "did:key:z");
    check_did_error(
        &good.replacen("did:key:", "did:web:", 1),
        "DidPrefix",
        "did:key:z",
    );
    check_did_error(&good.replacen(":z", ":m", 1), "DidPrefix", "did:key:z");
    check_did_error("did:key:z6Mk0OIl", "DidBase58", "base58");
    let mut secp = bytes.clone();
    secp[0] = 0xe7; // secp256k1-pub
    check_did_error(&reencode(&secp), "DidCodec", "e701");
    check_did_error(&reencode(&bytes[..33]), "DidLength", "31 bytes");
    let mut long = bytes.clone();
    long.push(0);
    check_did_error(&reencode(&long), "DidLength", "33 bytes");
    check_did_error(
        &format!("did:key:z{}", "2".repeat(200)),
        "DidLength",
        "expected 32",
    );
    check_did_error("did:key:z", "DidCodec", "expected `ed01`");
    // y = 2 is not on the curve.
    let mut not_a_point = vec![0xed, 0x01, 2];
    not_a_point.extend([0; 31]);
    check_did_error(
        &reencode(&not_a_point),
        "DidKey",
        "valid Ed25519 public key",
    );
}

#[test]
fn event_id_round_trips_and_rejects_malformed_text() {
    let id = EventId::from_bytes(*blake3::hash(b"x").as_bytes());
    let text = id.to_string();
    assert!(text.starts_with("bafkr4i"), "{text}");
    assert_eq!(text.parse::<EventId>().unwrap(), id);
    assert_eq!(
        content_hash(b"x"),
        text,
        "content hashes share the CID format"
    );

    for (input, reason) in [
        ("", "prefix `b`"),
        ("zafkr4i", "prefix `b`"),
        ("b", "36"),
        (&text.to_uppercase(), "prefix `b`"),
        (&format!("B{}", &text[1..].to_uppercase()), "prefix `b`"),
        (&text[..text.len() - 1], "base32"),
        (&format!("{text}a"), "base32"),
        (&text.replacen("bafkr4", "bafyr4", 1), "CID prefix"),
        (&text.replacen('a', "1", 1), "alphabet"),
    ] {
        let err = input.parse::<EventId>().unwrap_err();
        assert!(
            matches!(err, Error::EventIdParse { .. }),
            "{input}: {err:?}"
        );
        assert!(err.to_string().contains(reason), "{input}: {err}");
    }
}

#[test]
fn network_ids_are_validated() {
    assert!(NetworkId::new("fedpool-main").is_ok());
    assert!(NetworkId::new("a.b_c-1").is_ok());
    for bad in ["", "Fedpool", "fed pool", "fedpool/main", &"x".repeat(65)] {
        assert!(
            matches!(NetworkId::new(bad), Err(Error::NetworkId { .. })),
            "{bad}"
        );
    }
}

#[cfg(unix)]
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn key_file_round_trips_with_owner_only_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.key");
    let keypair = Keypair::generate().unwrap();
    write_key_file(&path, &keypair, false).unwrap();
    #[cfg(unix)]
    assert_eq!(mode_of(&path), 0o600);
    let loaded = read_key_file(&path).unwrap();
    assert_eq!(loaded.did(), keypair.did());
    assert_eq!(loaded.sign(b"m"), keypair.sign(b"m"));
    let content = std::fs::read_to_string(&path).unwrap();
    assert!(content.starts_with(&format!("fedpool-key-v1\n{}\n", keypair.did())));
}

#[test]
fn generated_keys_differ() {
    let a = Keypair::generate().unwrap();
    let b = Keypair::generate().unwrap();
    assert_ne!(a.did(), b.did());
}

#[test]
fn key_file_is_not_overwritten_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.key");
    let first = Keypair::insecure_from_seed(1);
    write_key_file(&path, &first, false).unwrap();
    let err = write_key_file(&path, &Keypair::insecure_from_seed(2), false).unwrap_err();
    assert!(matches!(err, Error::KeyFileExists { .. }), "{err:?}");
    assert!(err.to_string().contains("--force"));
    assert_eq!(read_key_file(&path).unwrap().did(), first.did());
}

#[cfg(unix)]
#[test]
fn forced_overwrite_replaces_a_loose_file_with_an_owner_only_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.key");
    std::fs::write(&path, "old").unwrap();
    set_mode(&path, 0o644);
    let keypair = Keypair::insecure_from_seed(3);
    write_key_file(&path, &keypair, true).unwrap();
    assert_eq!(mode_of(&path), 0o600);
    assert_eq!(read_key_file(&path).unwrap().did(), keypair.did());
}

#[cfg(unix)]
#[test]
fn key_file_readable_by_others_is_refused_with_a_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.key");
    write_key_file(&path, &Keypair::insecure_from_seed(1), false).unwrap();
    for mode in [0o644, 0o640, 0o604, 0o620, 0o602, 0o660] {
        set_mode(&path, mode);
        let err = read_key_file(&path).unwrap_err();
        assert!(
            matches!(err, Error::KeyFilePermissions { mode: m, .. } if m == mode),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains(&format!("{mode:o}")), "{message}");
        assert!(
            message.contains(&format!("chmod 600 {}", path.display())),
            "{message}"
        );
    }
    set_mode(&path, 0o600);
    read_key_file(&path).unwrap();
    set_mode(&path, 0o400);
    read_key_file(&path).unwrap();
}

#[cfg(unix)]
#[test]
fn malformed_key_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.key");
    let keypair = Keypair::insecure_from_seed(1);
    let other = Keypair::insecure_from_seed(2);
    write_key_file(&path, &keypair, false).unwrap();
    let good = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = good.lines().collect();
    let cases = [
        ("", "first line"),
        ("fedpool-key-v2\nx\ny\n", "first line"),
        ("fedpool-key-v1\n", "missing DID"),
        (&format!("fedpool-key-v1\n{}\n", lines[1]), "missing secret"),
        (
            &format!("fedpool-key-v1\nnot-a-did\n{}\n", lines[2]),
            "bad DID",
        ),
        (&format!("fedpool-key-v1\n{}\n0OIl\n", lines[1]), "base58"),
        (
            &format!("fedpool-key-v1\n{}\n{}\n", lines[1], &lines[2][..10]),
            "32 bytes",
        ),
        (
            &format!("fedpool-key-v1\n{}\n{}\n", other.did(), lines[2]),
            "does not match",
        ),
        (&format!("{good}extra\n"), "unexpected lines"),
    ];
    for (content, reason) in cases {
        std::fs::write(&path, content).unwrap();
        set_mode(&path, 0o600);
        let err = read_key_file(&path).unwrap_err();
        assert!(
            matches!(err, Error::KeyFileFormat { .. }),
            "{content:?}: {err:?}"
        );
        assert!(err.to_string().contains(reason), "{content:?}: {err}");
    }
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.key");
    let keypair = Keypair::insecure_from_seed(5);
    write_key_file(&path, &keypair, false).unwrap();
    let secret_line = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .nth(2)
        .unwrap()
        .to_string();
    let debug = format!("{keypair:?} {keypair:#?}");
    assert!(!debug.contains(&secret_line));
    assert_eq!(debug.matches(&keypair.did().to_string()).count(), 2);
}

#[cfg(unix)]
#[test]
fn a_key_file_owned_by_another_user_is_refused() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.key");
    write_key_file(&path, &Keypair::insecure_from_seed(4), false).unwrap();
    let other_uid = std::fs::metadata(&path).unwrap().uid() + 4242;
    // Only root can give a file away; elsewhere the check is exercised by the next lines only
    // when the chown succeeds.
    if std::os::unix::fs::chown(&path, Some(other_uid), None).is_err() {
        eprintln!("not root: cannot chown the key file to another user; skipping");
        return;
    }
    let err = read_key_file(&path).unwrap_err();
    assert!(
        matches!(err, Error::KeyFileOwner { owner, .. } if owner == other_uid),
        "{err:?}"
    );
    assert!(err.to_string().contains("owned by uid"), "{err}");
}
