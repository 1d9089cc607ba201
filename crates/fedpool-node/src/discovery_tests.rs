//! Discovery on the local network: mDNS finds peers only when it is asked for.

use std::sync::Arc;
use std::time::Duration;

use fedpool_ledger::{Keypair, NetworkId};

use crate::control::ControlRequest;
use crate::test_support::{CsvData, call, digits_csv, node_config, start};

async fn peers(home: &std::path::Path) -> usize {
    call(home, ControlRequest::Status).await[0]["peers"]
        .as_array()
        .map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_find_each_other_by_mdns_only_when_asked() {
    let network = NetworkId::new("mdns-test").unwrap();
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let mut config = node_config(
            dir.path(),
            &Keypair::insecure_from_seed(40 + i as u64),
            &network,
            Vec::new(),
            Arc::new(CsvData(digits_csv(10))),
            None,
        );
        // Two nodes with mDNS, two without; nobody is given a bootstrap address. mDNS
        // announces only addresses on the interface it multicasts on, never loopback, so the
        // mDNS nodes listen on every interface.
        config.mdns = i < 2;
        if config.mdns {
            config.listen = vec!["/ip4/0.0.0.0/tcp/0".parse().unwrap()];
        }
        nodes.push(start(config).await);
    }
    // mDNS needs multicast that reaches this host's own sockets; some machines (no network,
    // or a sandbox that filters multicast) cannot deliver it, and there only the half of the
    // claim that says nobody is found without mDNS can be shown.
    if !multicast_reaches_this_host() {
        eprintln!("multicast does not reach this host: checking only that mDNS is off by default");
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(peers(dirs[2].path()).await, 0);
        assert_eq!(peers(dirs[3].path()).await, 0);
        return;
    }
    // libp2p's mDNS probes at 0.5 s, doubling: 60 s covers six queries from each side.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while peers(dirs[0].path()).await == 0 || peers(dirs[1].path()).await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the mDNS nodes never found each other"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The others announced nothing and looked for nobody.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(peers(dirs[0].path()).await, 1);
    assert_eq!(peers(dirs[2].path()).await, 0);
    assert_eq!(peers(dirs[3].path()).await, 0);
}

/// Whether a datagram sent to a multicast group comes back to a socket of this host that
/// joined it, on the interface the default route uses (where mDNS announces).
fn multicast_reaches_this_host() -> bool {
    use std::net::{Ipv4Addr, UdpSocket};
    let probe = || -> std::io::Result<bool> {
        let interface = {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            s.connect("224.0.0.251:5353")?;
            match s.local_addr()?.ip() {
                std::net::IpAddr::V4(ip) if !ip.is_loopback() && !ip.is_unspecified() => ip,
                _ => return Ok(false),
            }
        };
        let group = Ipv4Addr::new(239, 255, 77, 13);
        let receiver = UdpSocket::bind("0.0.0.0:0")?;
        receiver.join_multicast_v4(&group, &interface)?;
        receiver.set_read_timeout(Some(Duration::from_millis(500)))?;
        let port = receiver.local_addr()?.port();
        let sender = UdpSocket::bind((interface, 0))?;
        sender.set_multicast_loop_v4(true)?;
        let token = rand::random::<u64>().to_le_bytes();
        let mut buffer = [0u8; 8];
        for _ in 0..4 {
            sender.send_to(&token, (group, port))?;
            while let Ok((n, _)) = receiver.recv_from(&mut buffer) {
                if buffer[..n] == token {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    };
    probe().unwrap_or(false)
}
