//! The client against a real local EVM (anvil): deploy, anchor, settle, and a replayed batch
//! refused by the payout contract itself.

use alloy::primitives::{Address, B256, U256};
use alloy::providers::ProviderBuilder;
use fedpool_chain::anvil::{Anvil, DEV_ACCOUNT_0_KEY};
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
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
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
