//! The inconsistent-unmasking attack (issue 9, finding 1), played by a malicious server
//! against honest clients, for all-pairs and SecAgg+ (Harary) topologies.
//!
//! The server routes to the target u only the shares of a set H of t neighbours, so u masks
//! with H alone. Then it tells every other participant "u survived" (to collect t shares of
//! u's self-mask seed b_u) while telling enough of each h ∈ H's neighbours "h dropped" (to
//! collect t shares of each h's masking key, from which every pairwise mask s_uh follows).
//! With both, it strips every mask off u's input. Every honest client releases only one share
//! per owner, so that old guard cannot help; the consistency check must.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use fedpool_secagg::{
    Client, ClientEvent, ClientInput, ClientOutput, Error, ParticipantIdx, RoundConfig, ToClient,
    ToServer, UnmaskRequest,
};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use support::Spec;

/// What the attack obtained: how many shares of each secret reached the server.
struct Haul {
    self_mask_shares_of_target: usize,
    /// For each h ∈ H, the masking-key shares of h.
    masking_key_shares: BTreeMap<ParticipantIdx, usize>,
    /// Clients that refused (aborted) instead of releasing shares.
    refused: Vec<(ParticipantIdx, Error)>,
}

impl Haul {
    /// Whether the server can rebuild b_u and every s_sk_h, h ∈ H: u's input, exactly.
    fn reveals_target(&self, threshold: usize) -> bool {
        self.self_mask_shares_of_target >= threshold
            && self.masking_key_shares.values().all(|&n| n >= threshold)
    }
}

fn drain(client: &mut Client<ChaCha20Rng>) -> Vec<ClientOutput> {
    std::iter::from_fn(|| client.poll_output()).collect()
}

fn sent(outputs: Vec<ClientOutput>) -> Option<ToServer> {
    outputs.into_iter().find_map(|out| match out {
        ClientOutput::Send(msg) => Some(msg),
        ClientOutput::Event(_) => None,
    })
}

fn aborted(outputs: &[ClientOutput]) -> Option<Error> {
    outputs.iter().find_map(|out| match out {
        ClientOutput::Event(ClientEvent::Aborted(error)) => Some(error.clone()),
        _ => None,
    })
}

/// The shares the server routes to `u`: only those from `h`.
fn attack(
    spec: &Spec,
    target: ParticipantIdx,
    h: &BTreeSet<ParticipantIdx>,
    // The survivor set the server shows each participant.
    shown: &dyn Fn(ParticipantIdx) -> Vec<ParticipantIdx>,
) -> Haul {
    let config: Arc<RoundConfig> = spec.config();
    let identities = spec.identities();
    let inputs = spec.inputs();
    let n = spec.n;
    let all: Vec<ParticipantIdx> = (0..n as u32).map(ParticipantIdx).collect();
    let mut clients: Vec<Client<ChaCha20Rng>> = all
        .iter()
        .map(|&p| {
            Client::new(
                Arc::clone(&config),
                p,
                &identities[p.as_usize()],
                inputs[p.as_usize()].clone(),
                ChaCha20Rng::seed_from_u64(1000 + u64::from(p.0)),
            )
            .unwrap()
        })
        .collect();

    // Stage 1, honestly: relay every neighbour's signed keys.
    let adverts: Vec<_> = clients
        .iter_mut()
        .map(|c| match sent(drain(c)) {
            Some(ToServer::AdvertiseKeys(keys)) => keys,
            other => panic!("{other:?}"),
        })
        .collect();
    let mut uploads = Vec::new();
    for &p in &all {
        let relayed = config
            .neighbours(p)
            .iter()
            .map(|v| adverts[v.as_usize()].clone())
            .collect();
        let client = &mut clients[p.as_usize()];
        client.handle(ClientInput::Received(ToClient::NeighbourKeys(relayed)));
        match sent(drain(client)) {
            Some(ToServer::ShareKeys(shares)) => uploads.push(shares),
            other => panic!("{other:?}"),
        }
    }

    // Stage 2: the target gets only H's shares; everyone else gets all of theirs.
    for &p in &all {
        let routed = all
            .iter()
            .filter(|&&sender| p != target || h.contains(&sender))
            .filter_map(|&sender| {
                uploads[sender.as_usize()]
                    .iter()
                    .find(|s| s.peer == p)
                    .map(|s| fedpool_secagg::EncryptedShares {
                        peer: sender,
                        ciphertext: s.ciphertext,
                    })
            })
            .collect();
        let client = &mut clients[p.as_usize()];
        client.handle(ClientInput::Received(ToClient::RoutedShares(routed)));
        assert!(
            matches!(sent(drain(client)), Some(ToServer::MaskedInput(_))),
            "{p} sent no masked input"
        );
    }

    // Stage 3 → 4: the story each participant is told, and the signatures it gives.
    let mut haul = Haul {
        self_mask_shares_of_target: 0,
        masking_key_shares: h.iter().map(|&x| (x, 0)).collect(),
        refused: Vec::new(),
    };
    let mut signatures: BTreeMap<ParticipantIdx, [u8; 64]> = BTreeMap::new();
    let mut alive = Vec::new();
    for &p in &all {
        let client = &mut clients[p.as_usize()];
        client.handle(ClientInput::Received(ToClient::Survivors(shown(p))));
        let outputs = drain(client);
        if let Some(error) = aborted(&outputs) {
            haul.refused.push((p, error));
            continue;
        }
        match sent(outputs) {
            Some(ToServer::ConsistencySignature(signature)) => {
                signatures.insert(p, signature);
                alive.push(p);
            }
            other => panic!("{other:?}"),
        }
    }

    // Stage 5: each participant gets its own story back with every neighbour signature the
    // server holds (the ones over another story fail to verify; the client decides).
    for &p in &alive {
        let request = UnmaskRequest {
            survivors: shown(p),
            signatures: config
                .neighbours(p)
                .iter()
                .filter_map(|v| signatures.get(v).map(|s| (*v, *s)))
                .collect(),
        };
        let client = &mut clients[p.as_usize()];
        client.handle(ClientInput::Received(ToClient::Unmask(request)));
        let outputs = drain(client);
        if let Some(error) = aborted(&outputs) {
            haul.refused.push((p, error));
            continue;
        }
        let Some(ToServer::UnmaskShares(response)) = sent(outputs) else {
            panic!("{p} answered nothing");
        };
        haul.self_mask_shares_of_target += response
            .self_mask_shares
            .iter()
            .filter(|(owner, _)| *owner == target)
            .count();
        for (owner, _) in &response.masking_key_shares {
            if let Some(count) = haul.masking_key_shares.get_mut(owner) {
                *count += 1;
            }
        }
    }
    haul
}

/// What the server would have collected had every client answered its own story (the
/// protocol before the consistency check): each participant releases b-shares of its held
/// neighbours in its story and masking-key shares of the others.
fn haul_without_consistency_check(
    config: &RoundConfig,
    target: ParticipantIdx,
    h: &BTreeSet<ParticipantIdx>,
    shown: &dyn Fn(ParticipantIdx) -> Vec<ParticipantIdx>,
) -> Haul {
    let mut haul = Haul {
        self_mask_shares_of_target: 0,
        masking_key_shares: h.iter().map(|&x| (x, 0)).collect(),
        refused: Vec::new(),
    };
    for p in (0..config.n_participants() as u32).map(ParticipantIdx) {
        // Everyone but the target holds all its neighbours' shares; the target holds H's.
        let held: Vec<ParticipantIdx> = config
            .neighbours(p)
            .iter()
            .copied()
            .filter(|v| p != target || h.contains(v))
            .collect();
        let story = shown(p);
        for v in held {
            if story.contains(&v) {
                haul.self_mask_shares_of_target += usize::from(v == target);
            } else if let Some(count) = haul.masking_key_shares.get_mut(&v) {
                *count += 1;
            }
        }
    }
    haul
}

/// The published attack's stories: u survives for everyone; each member of H is declared
/// dropped to as many of its neighbours as possible while every story keeps u and the
/// listener, rotating which members of H each listener hears dropped so that each h reaches t
/// listeners.
fn stories(
    config: &RoundConfig,
    target: ParticipantIdx,
    h: &BTreeSet<ParticipantIdx>,
    dropped_per_story: usize,
) -> impl Fn(ParticipantIdx) -> Vec<ParticipantIdx> + use<> {
    let n = config.n_participants();
    let h: Vec<ParticipantIdx> = h.iter().copied().collect();
    let target_story: Vec<ParticipantIdx> = (0..n as u32)
        .map(ParticipantIdx)
        .filter(|&p| p == target || h.contains(&p) || !config.are_neighbours(target, p))
        .collect();
    move |listener: ParticipantIdx| {
        if listener == target {
            // The target masked with H alone: show it a set it can sign.
            return target_story.clone();
        }
        let candidates: Vec<ParticipantIdx> =
            h.iter().copied().filter(|&x| x != listener).collect();
        let dropped: BTreeSet<ParticipantIdx> = (0..dropped_per_story.min(candidates.len()))
            .map(|i| candidates[(listener.as_usize() + i) % candidates.len()])
            .collect();
        (0..n as u32)
            .map(ParticipantIdx)
            .filter(|p| *p == target || *p == listener || !dropped.contains(p))
            .collect()
    }
}

fn check_attack_fails(spec: Spec, dropped_per_story: usize) {
    let config = spec.config();
    let target = ParticipantIdx(0);
    let t = config.threshold();
    let h: BTreeSet<ParticipantIdx> = config.neighbours(target).iter().copied().take(t).collect();
    let shown = stories(&config, target, &h, dropped_per_story);

    // The attack is real: answering each story as told would hand the server u's input.
    let before = haul_without_consistency_check(&config, target, &h, &shown);
    assert!(
        before.reveals_target(t),
        "the stories would not have revealed the target: {} b-shares, {:?}",
        before.self_mask_shares_of_target,
        before.masking_key_shares
    );

    let haul = attack(&spec, target, &h, &shown);
    assert!(
        !haul.reveals_target(t),
        "the server rebuilt the target's input: {} b-shares, {:?}",
        haul.self_mask_shares_of_target,
        haul.masking_key_shares
    );
    // Those who refused did so at the unmasking stage, on seeing that their neighbours had
    // signed other stories (or too few had signed theirs).
    assert!(!haul.refused.is_empty());
    assert!(
        haul.refused
            .iter()
            .all(|(_, e)| e.to_string().contains("unmasking")),
        "{:?}",
        haul.refused
    );
}

#[test]
fn inconsistent_unmasking_requests_cannot_reveal_one_input_all_pairs() {
    // n = 10, t = 5: what the protocol's own plan picks for 10 members; 3 of H dropped per
    // story, as in the finding.
    check_attack_fails(Spec::all_pairs(10, 5), 3);
}

#[test]
fn inconsistent_unmasking_requests_cannot_reveal_one_input_harary() {
    for (n, degree, threshold) in [(40, 12, 7), (60, 20, 11)] {
        let spec = Spec::harary(n, degree, threshold);
        // Every member of H is declared dropped to all of its neighbours but the target.
        check_attack_fails(spec, threshold);
    }
}

#[test]
fn two_groups_shown_two_sets_cannot_both_unmask() {
    // The server splits the round in two and shows each half its own set (one declaring
    // member 1 dropped, one not): no participant unmasks for a set that fewer than t of its
    // neighbours signed, and in all-pairs with 2t > k both halves cannot reach t.
    let spec = Spec::all_pairs(10, 5);
    let config = spec.config();
    let everyone: Vec<ParticipantIdx> = (0..10).map(ParticipantIdx).collect();
    let without_one: Vec<ParticipantIdx> = everyone.iter().copied().filter(|p| p.0 != 1).collect();
    let shown = |p: ParticipantIdx| {
        if p.0 < 5 {
            everyone.clone()
        } else {
            without_one.clone()
        }
    };
    // No shares are withheld from anyone here: the attack is the split alone.
    let h: BTreeSet<ParticipantIdx> = config
        .neighbours(ParticipantIdx(0))
        .iter()
        .copied()
        .collect();
    let haul = attack(&spec, ParticipantIdx(0), &h, &shown);
    // Nobody holds 5 neighbour signatures over its own set (each half has 4 others), and a
    // signature over the other set proves the server lied: nobody releases anything.
    assert_eq!(haul.refused.len(), 10, "{:?}", haul.refused);
    assert!(haul.refused.iter().all(|(_, e)| matches!(
        e,
        Error::TooFewSurvivors { .. } | Error::InconsistentSets { .. }
    )));
    assert_eq!(haul.self_mask_shares_of_target, 0);
    assert_eq!(config.threshold(), 5);
}
