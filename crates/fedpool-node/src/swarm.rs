//! The libp2p stack of a node: TCP and QUIC, Noise and Yamux; identify and ping; Kademlia for
//! discovery (and mDNS on the local network, only when asked); gossipsub for new ledger events; request-response for round messages (in
//! chunks) and ledger catch-up.

use std::time::Duration;

use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    StreamProtocol, Swarm, gossipsub, identify, kad, mdns, noise, ping, request_response, tcp,
    yamux,
};

use crate::Error;
use crate::chunk::MAX_CHUNK_FRAME;
use crate::codec::FrameCodec;
use crate::sync::{MAX_SYNC_REQUEST, MAX_SYNC_RESPONSE};

/// Round messages (chunked).
pub const ROUND_PROTOCOL: StreamProtocol = StreamProtocol::new("/fedpool/round/1");
/// Ledger catch-up.
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/fedpool/ledger-sync/1");
/// Kademlia, in fedpool's own DHT.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/fedpool/kad/1");
/// Largest gossiped event; bigger ones travel by catch-up only.
pub const MAX_GOSSIP_BYTES: usize = 256 * 1024;

/// Everything a node speaks.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Who a peer is and where it listens.
    pub identify: identify::Behaviour,
    /// Liveness.
    pub ping: ping::Behaviour,
    /// Peer discovery.
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    /// Peers on the local network, announced by multicast: off unless asked for, since it
    /// tells the whole LAN that this machine runs a node.
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    /// New ledger events, to everyone.
    pub gossipsub: gossipsub::Behaviour,
    /// Round messages, one chunk per request; the response is an empty acknowledgement.
    pub rounds: request_response::Behaviour<FrameCodec>,
    /// Ledger heads and ranges.
    pub sync: request_response::Behaviour<FrameCodec>,
}

/// Builds a node's swarm on the current tokio runtime.
pub fn build(
    key: libp2p::identity::Keypair,
    request_timeout: Duration,
    mdns: bool,
) -> Result<Swarm<Behaviour>, Error> {
    let transport_error = |e: &dyn std::fmt::Display| Error::Transport(e.to_string());
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| transport_error(&e))?
        .with_quic()
        .with_behaviour(|key| {
            let peer_id = key.public().to_peer_id();
            let gossip_config = gossipsub::ConfigBuilder::default()
                .heartbeat_interval(Duration::from_millis(500))
                .validation_mode(gossipsub::ValidationMode::Strict)
                .validate_messages()
                .max_transmit_size(MAX_GOSSIP_BYTES + 4096)
                // Content-addressed: the same event is one message whoever forwards it.
                .message_id_fn(|m: &gossipsub::Message| {
                    gossipsub::MessageId::from(blake3::hash(&m.data).to_hex().to_string())
                })
                .build()
                .map_err(|e| e.to_string())?;
            let gossipsub = gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                gossip_config,
            )?;
            let mut kad = kad::Behaviour::with_config(
                peer_id,
                kad::store::MemoryStore::new(peer_id),
                kad::Config::new(KAD_PROTOCOL),
            );
            kad.set_mode(Some(kad::Mode::Server));
            let mdns = if mdns {
                Some(mdns::tokio::Behaviour::new(
                    mdns::Config::default(),
                    peer_id,
                )?)
            } else {
                None
            };
            let rr_config = request_response::Config::default()
                .with_request_timeout(request_timeout)
                .with_max_concurrent_streams(256);
            Ok(Behaviour {
                identify: identify::Behaviour::new(identify::Config::new(
                    "/fedpool/1".into(),
                    key.public(),
                )),
                ping: ping::Behaviour::new(ping::Config::new()),
                kad,
                mdns: mdns.into(),
                gossipsub,
                rounds: request_response::Behaviour::with_codec(
                    FrameCodec {
                        max_request: MAX_CHUNK_FRAME,
                        max_response: 64,
                    },
                    [(ROUND_PROTOCOL, request_response::ProtocolSupport::Full)],
                    rr_config.clone(),
                ),
                sync: request_response::Behaviour::with_codec(
                    FrameCodec {
                        max_request: MAX_SYNC_REQUEST,
                        max_response: MAX_SYNC_RESPONSE,
                    },
                    [(SYNC_PROTOCOL, request_response::ProtocolSupport::Full)],
                    rr_config,
                ),
            })
        })
        .map_err(|e| transport_error(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    Ok(swarm)
}
