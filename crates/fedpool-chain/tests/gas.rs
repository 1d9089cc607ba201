//! Gas per anchor and per payout, batched, on a local EVM (anvil). The README's gas table is
//! this test's output: `cargo nextest run --workspace -E 'test(gas_per)' --no-capture`.

use fedpool_chain::anvil::{Anvil, DEV_ACCOUNT_0_KEY};
use fedpool_chain::{ChainClient, EvmWallet, Retry};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gas_per_anchor_and_per_payout_falls_with_the_batch() {
    let anvil = Anvil::start(0, None);
    let wallet = EvmWallet::from_hex(DEV_ACCOUNT_0_KEY).unwrap();
    let client = ChainClient::connect(&anvil.url(), Some(wallet), Retry::default())
        .await
        .unwrap();
    let deployment = client
        .deploy("fedpool reward", "FPR", 1 << 40)
        .await
        .unwrap();

    let first = client.anchor(&deployment, [1; 32], 10).await.unwrap();
    let later = client.anchor(&deployment, [2; 32], 1000).await.unwrap();
    println!(
        "| anchor (a root of any number of heads) | first: {} gas, later: {} gas |",
        first.gas_used, later.gas_used
    );
    // The root is the same size whatever it covers: one anchor costs the same for 10 or 1000
    // heads, within the cost of the first write to the contract's storage.
    assert!(later.gas_used <= first.gas_used);

    println!("| batch size | gas (new payees) | gas a payout | gas (paid before) | gas a payout |");
    println!("| ---: | ---: | ---: | ---: | ---: |");
    let mut previous_per_payout = u64::MAX;
    let mut nonce = 0;
    let model = [7; 32];
    for (batch, size) in [1usize, 10, 50, 100].into_iter().enumerate() {
        // Fresh addresses (their first token balance costs a new storage slot), then the same
        // addresses again (an existing balance: what repeat contributors cost).
        let payees: Vec<([u8; 20], u64)> = (0..size)
            .map(|i| {
                let mut address = [0u8; 20];
                address[0] = 0xee;
                address[1] = batch as u8;
                address[16..].copy_from_slice(&(i as u32 + 1).to_be_bytes());
                (address, 1 + i as u64)
            })
            .collect();
        nonce += 1;
        let new = client
            .settle(&deployment, model, nonce, &payees)
            .await
            .unwrap();
        nonce += 1;
        let again = client
            .settle(&deployment, model, nonce, &payees)
            .await
            .unwrap();
        let per_new = new.gas_used / size as u64;
        println!(
            "| {size} | {} | {per_new} | {} | {} |",
            new.gas_used,
            again.gas_used,
            again.gas_used / size as u64
        );
        assert!(
            per_new <= previous_per_payout,
            "batching never costs more a payout"
        );
        assert!(
            again.gas_used < new.gas_used,
            "paying an existing holder is cheaper"
        );
        previous_per_payout = per_new;
    }
}
