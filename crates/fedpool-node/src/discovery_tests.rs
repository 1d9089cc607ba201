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
    // mDNS needs a multicast route off loopback; a machine without one (no network at all)
    // can only show the half of the claim that says nobody is found without it.
    let multicast_route = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("224.0.0.251:5353").and_then(|_| s.local_addr()))
        .is_ok_and(|addr| !addr.ip().is_loopback() && !addr.ip().is_unspecified());
    if !multicast_route {
        eprintln!("no multicast route on this machine: checking only that mDNS is off by default");
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(peers(dirs[2].path()).await, 0);
        assert_eq!(peers(dirs[3].path()).await, 0);
        return;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
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
