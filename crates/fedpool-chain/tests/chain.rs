//! The client against a real local EVM (anvil): deploy, anchor, settle, and a replayed batch
//! refused by the payout contract itself.

use alloy::primitives::{Address, B256, U256};
use alloy::providers::ProviderBuilder;
use fedpool_chain::anvil::{Anvil, DEV_ACCOUNT_0_KEY, DEV_ACCOUNT_1_KEY};
use fedpool_chain::contracts::FedpoolPayouts;
use fedpool_chain::{ChainClient, EvmWallet, Retry};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anchors_and_settlements_land_once_and_a_replayed_batch_is_refused_on_chain() {
    let anvil = Anvil::start(0, None);
    let wallet = EvmWallet::from_hex(DEV_ACCOUNT_0_KEY).unwrap();
    let client = ChainClient::connect(&anvil.url(), Some(wallet.clone()), Retry::default())
        .await
        .unwrap();
    assert_eq!(client.chain_id(), 31337);
    let deployment = client
        .deploy("fedpool reward", "FPR", 1_000_000)
        .await
        .unwrap();
    client.check_deployment(&deployment).await.unwrap();
    let fedpool_chain::ContractAddresses {
        anchor,
        token,
        payouts,
    } = deployment.addresses().unwrap();

    // An anchor lands once: asking again with the same root finds the first.
    let first = client.anchor(&deployment, [7; 32], 3).await.unwrap();
    let again = client.anchor(&deployment, [7; 32], 3).await.unwrap();
    assert_eq!(first, again, "the same root is not anchored twice");
    let second = client.anchor(&deployment, [8; 32], 4).await.unwrap();
    assert_eq!((first.index, second.index), (0, 1));
    let on_chain = client.anchor_at(anchor, 1).await.unwrap().unwrap();
    assert_eq!(on_chain.root, [8; 32]);
    assert_eq!(on_chain.heads, 4);
    assert_eq!(on_chain.block_number, second.block_number);
    assert_eq!(on_chain.submitter, wallet.address());
    assert!(client.anchor_at(anchor, 2).await.unwrap().is_none());
    assert!(first.gas_used > 0);

    // A batch pays each address exactly; asking again returns the landed batch.
    let owners = [[0x11; 20], [0x22; 20]];
    let batch = [(owners[0], 250), (owners[1], 17)];
    let model = [9; 32];
    let paid = client.settle(&deployment, model, 1, &batch).await.unwrap();
    assert!(paid.sent_now);
    let again = client.settle(&deployment, model, 1, &batch).await.unwrap();
    assert!(!again.sent_now, "a settled nonce is found, not sent again");
    assert_eq!(again.tx_hash, paid.tx_hash);
    assert_eq!(
        client.balance_of(token, owners[0]).await.unwrap(),
        U256::from(250)
    );
    assert_eq!(
        client.balance_of(token, owners[1]).await.unwrap(),
        U256::from(17)
    );

    // The contract itself refuses the replay (sent around the client's check).
    let provider = ProviderBuilder::new()
        .wallet(
            alloy::signers::local::PrivateKeySigner::from_slice(
                &alloy::hex::decode(DEV_ACCOUNT_0_KEY).unwrap(),
            )
            .unwrap(),
        )
        .connect_http(anvil.url().parse().unwrap());
    let contract = FedpoolPayouts::new(Address::from(payouts), provider);
    let replay = contract
        .settle(
            B256::from(model),
            1,
            Address::from(token),
            vec![Address::from(owners[0])],
            vec![U256::from(250)],
        )
        // A fixed gas limit skips estimation, so the transaction is mined and reverts there.
        .gas(300_000)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(
        !replay.status(),
        "the payout contract reverts a replayed batch"
    );
    assert_eq!(
        client.balance_of(token, owners[0]).await.unwrap(),
        U256::from(250)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_chain_is_a_clear_error_after_the_retry_window() {
    let retry = Retry {
        total: std::time::Duration::from_millis(800),
        receipt_timeout: std::time::Duration::from_secs(1),
    };
    // A port nobody listens on (bound, then released).
    let port = fedpool_chain::anvil::free_loopback_port();
    let error = ChainClient::connect(&format!("http://127.0.0.1:{port}"), None, retry)
        .await
        .err()
        .expect("nobody answers")
        .to_string();
    assert!(error.contains("did not give its chain id"), "{error}");
    let error = ChainClient::connect("ftp://example.org", None, retry)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("only http"), "{error}");
}

#[test]
fn a_wallet_key_file_is_private_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wallet.key");
    let wallet = EvmWallet::generate().unwrap();
    wallet.save(&path).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let loaded = EvmWallet::load(&path).unwrap();
    assert_eq!(loaded.address(), wallet.address());
    assert!(
        !format!("{loaded:?}").contains("0x")
            || format!("{loaded:?}").contains(&wallet.address_text())
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = EvmWallet::load(&path).unwrap_err().to_string();
    assert!(
        error.contains("permissions") || error.contains("others"),
        "{error}"
    );
    assert!(
        wallet.save(&path).is_err(),
        "an existing key is never overwritten"
    );
}

async fn rpc(url: &str, method: &'static str, params: serde_json::Value) -> serde_json::Value {
    use alloy::providers::Provider;
    let provider = ProviderBuilder::new().connect_http(url.parse().unwrap());
    provider
        .raw_request::<_, serde_json::Value>(method.into(), params)
        .await
        .unwrap()
}

/// A chain that dies with the anchoring transaction unmined and comes back from its last state:
/// the client keeps asking, finds no anchor of its root, sends again, and the root is anchored
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anchor_lost_with_a_killed_chain_is_sent_again_and_lands_once() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let port = fedpool_chain::anvil::free_loopback_port();
    let anvil = Anvil::start(port, Some(&state));
    let url = anvil.url();
    let wallet = EvmWallet::from_hex(DEV_ACCOUNT_0_KEY).unwrap();
    let retry = Retry {
        total: std::time::Duration::from_secs(60),
        receipt_timeout: std::time::Duration::from_secs(2),
    };
    let client = ChainClient::connect(&url, Some(wallet), retry)
        .await
        .unwrap();
    let deployment = client.deploy("fedpool reward", "FPR", 1000).await.unwrap();
    // Let the state dump hold the contracts.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    rpc(&url, "evm_setAutomine", serde_json::json!([false])).await;
    let anchoring = {
        let deployment = deployment.clone();
        tokio::spawn(async move { client.anchor(&deployment, [5; 32], 3).await })
    };
    loop {
        let pool = rpc(&url, "txpool_status", serde_json::json!([])).await;
        let pending = pool["pending"].as_str().unwrap_or("0x0");
        if pending != "0x0" && pending != "0" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    anvil.kill();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let _anvil = Anvil::start(port, Some(&state));
    let receipt = anchoring.await.unwrap().unwrap();
    let reader = ChainClient::connect(&url, None, retry).await.unwrap();
    let anchor = deployment.addresses().unwrap().anchor;
    let on_chain = reader
        .anchor_at(anchor, receipt.index)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(on_chain.root, [5; 32]);
    assert_eq!(receipt.index, 0);
    assert!(
        reader.anchor_at(anchor, 1).await.unwrap().is_none(),
        "the root is anchored once"
    );
}

/// A reorganisation drops a settled batch: the audit flags the ledger's record of it as not on
/// chain, and settling the batch again (same nonce) pays it once — the balance is the amount,
/// not twice it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_dropped_by_a_reorganisation_is_flagged_and_paid_again_once() {
    use fedpool_ledger::{
        Event, Keypair, NetworkId, RewardsSettled, Rule, SettlementResent, Transfer,
    };
    let key = fedpool_chain::model_key(&"m".into());
    let anvil = Anvil::start(0, None);
    let url = anvil.url();
    let wallet = EvmWallet::from_hex(DEV_ACCOUNT_0_KEY).unwrap();
    let client = ChainClient::connect(&url, Some(wallet), Retry::default())
        .await
        .unwrap();
    let deployment = client.deploy("fedpool reward", "FPR", 1000).await.unwrap();
    let addresses = deployment.addresses().unwrap();
    let owner = [0x33; 20];
    // Approve first, so the snapshot below keeps the allowance and the reorg drops the batch only.
    client
        .settle(&deployment, key, 1, &[([0x44; 20], 1)])
        .await
        .unwrap();
    let snapshot = rpc(&url, "evm_snapshot", serde_json::json!([])).await;
    let paid = client
        .settle(&deployment, key, 2, &[(owner, 40)])
        .await
        .unwrap();
    let publisher = Keypair::insecure_from_seed(1);
    let network = NetworkId::new("fedpool-chain-test").unwrap();
    let record = Event::sign(
        &network,
        &publisher,
        1,
        None,
        1,
        RewardsSettled {
            model_id: "m".into(),
            chain_id: client.chain_id(),
            payouts_contract: addresses.payouts,
            token: addresses.token,
            nonce: 2,
            block_number: paid.block_number,
            tx_hash: paid.tx_hash,
            transfers: vec![Transfer {
                owner: publisher.did(),
                address: owner,
                amount: 40,
            }],
            covers: vec![],
        },
    )
    .unwrap();
    let audit = fedpool_chain::audit(&client, std::slice::from_ref(&record))
        .await
        .unwrap();
    assert_eq!(
        (audit.n_settlements_confirmed, audit.violations.len()),
        (1, 0)
    );

    rpc(&url, "evm_revert", serde_json::json!([snapshot])).await;
    assert_eq!(
        client.balance_of(addresses.token, owner).await.unwrap(),
        U256::ZERO
    );
    let audit = fedpool_chain::audit(&client, std::slice::from_ref(&record))
        .await
        .unwrap();
    assert_eq!(audit.violations.len(), 1);
    assert_eq!(audit.violations[0].rule, Rule::SettlementNotOnChain);

    let resent = client
        .settle(&deployment, key, 2, &[(owner, 40)])
        .await
        .unwrap();
    assert!(resent.sent_now, "the dropped batch is sent again");
    let again = client
        .settle(&deployment, key, 2, &[(owner, 40)])
        .await
        .unwrap();
    assert!(!again.sent_now);
    assert_eq!(
        client.balance_of(addresses.token, owner).await.unwrap(),
        U256::from(40),
        "paid once"
    );

    // Recorded as resent, the batch is confirmed, carried by the new transaction.
    let resend = |tx_hash: [u8; 32], block_number: u64| {
        Event::sign(
            &network,
            &publisher,
            2,
            Some(record.id()),
            2,
            SettlementResent {
                model_id: "m".into(),
                settlement: record.id(),
                nonce: 2,
                block_number,
                tx_hash,
            },
        )
        .unwrap()
    };
    let honest = resend(resent.tx_hash, resent.block_number);
    let audit = fedpool_chain::audit(&client, &[record.clone(), honest])
        .await
        .unwrap();
    assert_eq!(
        (
            audit.n_settlements_confirmed,
            audit.n_settlements_resent,
            audit.violations.len()
        ),
        (1, 1, 0),
        "{:?}",
        audit.violations
    );
    // A resend naming a transaction that carries another batch (nonce 1's) proves nothing:
    // both it and the lost record are flagged.
    let first = client
        .settle(&deployment, key, 1, &[([0x44; 20], 1)])
        .await
        .unwrap();
    assert!(!first.sent_now);
    let forged = resend(first.tx_hash, first.block_number);
    let audit = fedpool_chain::audit(&client, &[record.clone(), forged.clone()])
        .await
        .unwrap();
    let flagged: Vec<(Rule, u64)> = audit
        .violations
        .iter()
        .map(|v| (v.rule, v.seq.unwrap()))
        .collect();
    assert_eq!(
        flagged,
        vec![
            (Rule::SettlementNotOnChain, 2),
            (Rule::SettlementNotOnChain, 1)
        ],
        "{:?}",
        audit.violations
    );
    assert!(
        audit.violations[0]
            .detail
            .contains("carries no settlement of batch 2"),
        "{}",
        audit.violations[0].detail
    );
}

/// An author anchors twice, then drops the second anchor's event from its ledger (as one
/// hiding what it rewrote after the first would): the audit finds the second anchor on chain
/// by the wallet the first one names and flags it as unrecorded, with the author. Another
/// wallet's anchors in the same contract are none of its business. Dropping every anchor event
/// does not help: the wallet that pays its settlements is looked for too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anchor_dropped_from_its_authors_ledger_is_flagged_as_unrecorded() {
    use fedpool_ledger::{
        ChainAnchored, Event, Keypair, NetworkId, RewardsSettled, Rule, Transfer,
    };
    let anvil = Anvil::start(0, None);
    let url = anvil.url();
    let wallet = EvmWallet::from_hex(DEV_ACCOUNT_0_KEY).unwrap();
    let client = ChainClient::connect(&url, Some(wallet), Retry::default())
        .await
        .unwrap();
    let deployment = client.deploy("fedpool reward", "FPR", 1000).await.unwrap();
    let contract = deployment.addresses().unwrap().anchor;
    let first = client.anchor(&deployment, [1; 32], 2).await.unwrap();
    let second = client.anchor(&deployment, [2; 32], 2).await.unwrap();
    // Someone else anchors in the same contract.
    let stranger = EvmWallet::from_hex(DEV_ACCOUNT_1_KEY).unwrap();
    let other = ChainClient::connect(&url, Some(stranger), Retry::default())
        .await
        .unwrap();
    let third = other.anchor(&deployment, [3; 32], 1).await.unwrap();
    assert_eq!((first.index, second.index, third.index), (0, 1, 2));

    let author = Keypair::insecure_from_seed(7);
    let network = NetworkId::new("fedpool-chain-test").unwrap();
    let record = |seq: u64, prev, root: [u8; 32], receipt: &fedpool_chain::AnchorReceipt| {
        Event::sign(
            &network,
            &author,
            seq,
            prev,
            seq,
            ChainAnchored {
                chain_id: client.chain_id(),
                contract,
                anchor_index: receipt.index,
                block_number: receipt.block_number,
                tx_hash: receipt.tx_hash,
                root,
                heads: vec![],
            },
        )
        .unwrap()
    };
    let a1 = record(1, None, [1; 32], &first);
    let a2 = record(2, Some(a1.id()), [2; 32], &second);

    let whole = fedpool_chain::audit(&client, &[a1.clone(), a2])
        .await
        .unwrap();
    assert_eq!(
        (whole.n_anchors_confirmed, whole.violations.len()),
        (2, 0),
        "{:?}",
        whole.violations
    );

    let truncated = fedpool_chain::audit(&client, &[a1]).await.unwrap();
    assert_eq!(truncated.n_anchors_confirmed, 1);
    assert_eq!(truncated.violations.len(), 1, "{:?}", truncated.violations);
    let flagged = &truncated.violations[0];
    assert_eq!(flagged.rule, Rule::AnchorUnrecorded);
    assert_eq!(flagged.author, Some(author.did()));
    assert!(
        flagged
            .detail
            .starts_with(&format!("anchor 1 (block {}", second.block_number)),
        "{}",
        flagged.detail
    );

    // Every anchor event of its own dropped: the wallet it pays rewards with is the one it
    // anchors with, and another node's recorded anchor names the contract, so both of its
    // anchors are still found.
    let paid = client
        .settle(
            &deployment,
            fedpool_chain::model_key(&"m".into()),
            1,
            &[([0x55; 20], 5)],
        )
        .await
        .unwrap();
    let addresses = deployment.addresses().unwrap();
    let settlement = Event::sign(
        &network,
        &author,
        1,
        None,
        1,
        RewardsSettled {
            model_id: "m".into(),
            chain_id: client.chain_id(),
            payouts_contract: addresses.payouts,
            token: addresses.token,
            nonce: 1,
            block_number: paid.block_number,
            tx_hash: paid.tx_hash,
            transfers: vec![Transfer {
                owner: author.did(),
                address: [0x55; 20],
                amount: 5,
            }],
            covers: vec![],
        },
    )
    .unwrap();
    let neighbour = Keypair::insecure_from_seed(8);
    let theirs = Event::sign(
        &network,
        &neighbour,
        1,
        None,
        1,
        ChainAnchored {
            chain_id: client.chain_id(),
            contract,
            anchor_index: third.index,
            block_number: third.block_number,
            tx_hash: third.tx_hash,
            root: [3; 32],
            heads: vec![],
        },
    )
    .unwrap();
    let none_of_its_own = fedpool_chain::audit(&client, &[settlement, theirs])
        .await
        .unwrap();
    let flagged: Vec<(Rule, Option<fedpool_ledger::Did>)> = none_of_its_own
        .violations
        .iter()
        .map(|v| (v.rule, v.author))
        .collect();
    assert_eq!(
        flagged,
        vec![
            (Rule::AnchorUnrecorded, Some(author.did())),
            (Rule::AnchorUnrecorded, Some(author.did()))
        ],
        "{:?}",
        none_of_its_own.violations
    );
}
