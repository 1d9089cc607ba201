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

/// Whether an mDNS query sent to the mDNS group comes back to a socket bound the way
/// libp2p's mDNS binds (port 5353 shared, the group joined on the interface of the default
/// route). A sandbox that filters multicast, or a daemon holding port 5353 alone, fails this.
fn multicast_reaches_this_host() -> bool {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
    let mdns_group = Ipv4Addr::new(224, 0, 0, 251);
    let probe = || -> std::io::Result<bool> {
        let interface = {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            s.connect((mdns_group, 5353))?;
            match s.local_addr()?.ip() {
                IpAddr::V4(ip) if !ip.is_loopback() && !ip.is_unspecified() => ip,
                _ => return Ok(false),
            }
        };
        let receiver = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        receiver.set_reuse_address(true)?;
        receiver.set_reuse_port(true)?;
        receiver.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 5353)).into())?;
        receiver.set_multicast_loop_v4(true)?;
        receiver.join_multicast_v4(&mdns_group, &interface)?;
        let receiver = UdpSocket::from(receiver);
        receiver.set_read_timeout(Some(Duration::from_millis(500)))?;
        let sender = UdpSocket::bind((interface, 0))?;
        // A PTR query for a name of its own that nobody answers.
        let name = format!("fedpool-probe-{:016x}", rand::random::<u64>());
        let mut query = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in [name.as_str(), "_udp", "local"] {
            query.push(label.len() as u8);
            query.extend_from_slice(label.as_bytes());
        }
        query.extend_from_slice(&[0, 0, 12, 0, 1]);
        let mut buffer = [0u8; 512];
        for _ in 0..4 {
            sender.send_to(&query, (mdns_group, 5353))?;
            while let Ok((n, _)) = receiver.recv_from(&mut buffer) {
                if buffer[..n] == query[..] {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    };
    probe().unwrap_or(false)
}
