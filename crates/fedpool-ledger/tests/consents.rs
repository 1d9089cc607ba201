//! Who may be asked: `active_consents` is what the publisher's roster is built from, so every
//! way a consent stops holding must take the owner out.

mod common;

use common::*;
use fedpool_ledger::*;

#[test]
fn only_consents_that_hold_now_put_an_owner_on_the_roster() {
    let mut ledger = Ledger::new();
    let publisher = Keypair::insecure_from_seed(1);
    let impostor = Keypair::insecure_from_seed(9);
    let owners: Vec<Keypair> = (10..18).map(Keypair::insecure_from_seed).collect();
    let m = model(&publisher, "roster", Some(4.0), 10);
    let other = model(&publisher, "other", Some(4.0), 10);
    ledger.push(&publisher, 1_000, m.clone());
    ledger.push(&publisher, 1_000, other.clone());

    // 0: plain consent. 1: revoked at 3,000. 2: revoked only at 9,000 (after "now").
    let active = ledger.push(&owners[0], 2_000, consent(&m, None, None));
    let revoked = ledger.push(&owners[1], 2_000, consent(&m, None, None));
    ledger.push(
        &owners[1],
        3_000,
        ConsentRevoked {
            model_id: m.model_id.clone(),
            consent: revoked.id(),
        },
    );
    let later_revoked = ledger.push(&owners[2], 2_000, consent(&m, None, None));
    ledger.push(
        &owners[2],
        9_000,
        ConsentRevoked {
            model_id: m.model_id.clone(),
            consent: later_revoked.id(),
        },
    );
    // 3: expired at 4,000. 4: names another publisher. 5: another card. 6: too few fields.
    ledger.push(&owners[3], 2_000, consent(&m, Some(4_000), None));
    let mut wrong_publisher = consent(&m, None, None);
    wrong_publisher.publisher = impostor.did();
    ledger.push(&owners[4], 2_000, wrong_publisher);
    let mut wrong_card = consent(&m, None, None);
    wrong_card.card_hash = content_hash(b"another card");
    ledger.push(&owners[5], 2_000, wrong_card);
    let mut narrow = consent(&m, None, None);
    narrow.fields.pop();
    ledger.push(&owners[6], 2_000, narrow);
    // 7: consented to the other model only, then granted again to this one with a cap (the
    // later grant counts).
    ledger.push(&owners[7], 2_000, consent(&other, None, None));
    ledger.push(&owners[7], 2_500, consent(&m, None, None));
    let regranted = ledger.push(&owners[7], 2_600, consent(&m, None, Some(1.5)));

    let now = 5_000;
    let roster = active_consents(&ledger.events, &m, &publisher.did(), now);
    let mut expected = vec![
        (owners[0].did(), active.id(), None),
        (owners[2].did(), later_revoked.id(), None),
        (owners[7].did(), regranted.id(), Some(1.5)),
    ];
    expected.sort_by_key(|(did, _, _)| *did);
    let got: Vec<(Did, EventId, Option<f64>)> = roster
        .iter()
        .map(|a| (a.owner, a.consent, a.epsilon_cap))
        .collect();
    assert_eq!(got, expected);

    // Before owner 3's expiry it was on the roster; after 9,000 owner 2 is gone too.
    let early = active_consents(&ledger.events, &m, &publisher.did(), 3_500);
    assert!(early.iter().any(|a| a.owner == owners[3].did()));
    assert!(!early.iter().any(|a| a.owner == owners[1].did()));
    let late = active_consents(&ledger.events, &m, &publisher.did(), 9_000);
    assert!(!late.iter().any(|a| a.owner == owners[2].did()));
    // On another publisher's roster for this model: only the consent that names it.
    assert!(active_consents(&ledger.events, &m, &impostor.did(), now).len() == 1);
}
