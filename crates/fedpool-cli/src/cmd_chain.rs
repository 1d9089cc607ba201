//! Web3 settlement: `fedpool chain deploy|show`, `fedpool wallet new|link|unlink|message|show`,
//! `fedpool anchor` and `fedpool settle`, over any EVM JSON-RPC endpoint.
//!
//! The home keeps `wallet.key` (this node's EVM key, 0600, never printed) and `chain.json`
//! (where the contracts live). A settlement batch is written ahead to `settle-pending.json`
//! before it is sent, so a crash between the chain and the ledger is finished by the next
//! `fedpool settle` (the chain is asked whether the batch's nonce is spent) and never pays twice.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use fedpool_chain::{ChainClient, Deployment, EvmWallet, Retry, model_key};
use fedpool_ledger::wallet::{WalletAction, format_address, hex, parse_address, parse_signature};
use fedpool_ledger::{
    Body, ChainAnchored, ChainHead, Did, EventId, RewardsSettled, SettlementResent, Transfer,
    WalletLinks, anchor::heads_root,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::home::Home;
use crate::node::{self, Node};
use crate::owner;
use crate::report::count;

/// The RPC endpoint when none is given: a local node (anvil, hardhat, geth --dev) on its
/// default port.
const DEFAULT_RPC: &str = "http://127.0.0.1:8545";

/// How long commands keep trying a chain that does not answer.
#[derive(Debug, Args, Clone)]
pub struct RpcArgs {
    /// The chain's JSON-RPC endpoint.
    #[arg(long, default_value = DEFAULT_RPC)]
    pub rpc: String,
    /// Keep retrying a chain that does not answer for this many seconds.
    #[arg(long, default_value_t = 60)]
    pub retry_for: u64,
}

impl RpcArgs {
    fn retry(&self) -> Retry {
        Retry {
            total: Duration::from_secs(self.retry_for),
            receipt_timeout: Duration::from_secs(self.retry_for.clamp(1, 30)),
        }
    }
}

/// `fedpool chain …`
#[derive(Debug, Subcommand)]
pub enum ChainCommand {
    /// Deploy the anchor, reward token and payout contracts with this node's wallet; the token's
    /// whole supply goes to the wallet. Writes chain.json in the home.
    Deploy {
        #[command(flatten)]
        rpc: RpcArgs,
        /// Tokens to mint (the token has no decimals: one token is one unit of a pool).
        #[arg(long, default_value_t = 1_000_000_000)]
        supply: u64,
        /// The token's name.
        #[arg(long, default_value = "fedpool reward")]
        name: String,
        /// The token's symbol.
        #[arg(long, default_value = "FPR")]
        symbol: String,
    },
    /// Use contracts someone else deployed (writes chain.json).
    Use {
        /// The EIP-155 chain id.
        #[arg(long)]
        chain_id: u64,
        /// The anchor contract.
        #[arg(long)]
        anchor: String,
        /// The reward token.
        #[arg(long)]
        token: String,
        /// The payout contract.
        #[arg(long)]
        payouts: String,
    },
    /// Show chain.json and this node's wallet.
    Show,
}

/// `fedpool wallet …`
#[derive(Debug, Subcommand)]
pub enum WalletCommand {
    /// Create this node's EVM wallet key (wallet.key, 0600) and print its address.
    New,
    /// Link a wallet to this node's DID, signed by both: the node's key signs the event, the
    /// wallet signs the message `fedpool wallet message` prints (EIP-191). Without --address,
    /// the home's wallet.key signs.
    Link(LinkArgs),
    /// Unlink a wallet, signed by both keys like a link.
    Unlink(LinkArgs),
    /// Print the message a wallet must sign (personal_sign) to link or unlink it.
    Message {
        /// The wallet's address.
        #[arg(long)]
        address: String,
        /// The chain payouts are made on (default: chain.json's, else the one the ledger's latest
        /// anchor or settlement names).
        #[arg(long)]
        chain_id: Option<u64>,
        /// The message for an unlink instead.
        #[arg(long)]
        unlink: bool,
    },
    /// This node's wallet and the wallets linked on the ledger.
    Show {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Arguments of `fedpool wallet link|unlink`.
#[derive(Debug, Args)]
pub struct LinkArgs {
    /// A wallet held elsewhere (a hardware or browser wallet): its address…
    #[arg(long, requires = "signature")]
    pub address: Option<String>,
    /// …and its personal_sign signature of `fedpool wallet message`.
    #[arg(long, requires = "address")]
    pub signature: Option<String>,
    /// The chain payouts are made on (default: chain.json's, else the one the ledger's latest
    /// anchor or settlement names).
    #[arg(long)]
    pub chain_id: Option<u64>,
}

/// Arguments of `fedpool anchor`.
#[derive(Debug, Args)]
pub struct AnchorArgs {
    #[command(flatten)]
    pub rpc: RpcArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `fedpool settle`.
#[derive(Debug, Args)]
pub struct SettleArgs {
    /// The model (id, id prefix or name) whose rewards to pay out.
    pub model: String,
    #[command(flatten)]
    pub rpc: RpcArgs,
    /// Transfers per transaction.
    #[arg(long, default_value_t = 50)]
    pub batch_size: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn wallet_path(home: &Home) -> PathBuf {
    home.dir().join("wallet.key")
}

fn deployment_path(home: &Home) -> PathBuf {
    home.dir().join("chain.json")
}

fn pending_path(home: &Home) -> PathBuf {
    home.dir().join("settle-pending.json")
}

fn anchor_pending_path(home: &Home) -> PathBuf {
    home.dir().join("anchor-pending.json")
}

/// An anchor written ahead of its transaction, so a run that stops after the chain took it
/// and before the ledger recorded it is finished by the next run: an anchor the chain holds
/// is always on the ledger, and `verify --anchors` can flag one that is not.
#[derive(Serialize, Deserialize)]
struct PendingAnchor {
    chain_id: u64,
    contract: String,
    root: String,
    heads: Vec<ChainHead>,
}

fn load_wallet(home: &Home) -> Result<EvmWallet> {
    let path = wallet_path(home);
    if !path.exists() {
        bail!(
            "no wallet in {}; create one with `fedpool wallet new`",
            home.dir().display()
        );
    }
    Ok(EvmWallet::load(&path)?)
}

fn load_deployment(home: &Home) -> Result<Deployment> {
    let path = deployment_path(home);
    if !path.exists() {
        bail!(
            "no chain.json in {}; deploy the contracts with `fedpool chain deploy --rpc URL` or point at existing ones with `fedpool chain use`",
            home.dir().display()
        );
    }
    Ok(Deployment::load(&path)?)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Runs `fedpool chain …`.
pub fn chain(home: Home, command: ChainCommand) -> Result<()> {
    match command {
        ChainCommand::Deploy {
            rpc,
            supply,
            name,
            symbol,
        } => {
            let wallet = load_wallet(&home)?;
            let deployment = runtime()?.block_on(async {
                let client = ChainClient::connect(&rpc.rpc, Some(wallet), rpc.retry()).await?;
                client.deploy(&name, &symbol, supply).await
            })?;
            deployment.save(&deployment_path(&home))?;
            println!(
                "deployed on chain {}:\n  anchor   {}\n  token    {} ({supply} {symbol})\n  payouts  {}\nwritten to {}",
                deployment.chain_id,
                deployment.anchor,
                deployment.token,
                deployment.payouts,
                deployment_path(&home).display()
            );
            Ok(())
        }
        ChainCommand::Use {
            chain_id,
            anchor,
            token,
            payouts,
        } => {
            let deployment = Deployment {
                chain_id,
                anchor: format_address(&parse_address(&anchor).map_err(anyhow::Error::msg)?),
                token: format_address(&parse_address(&token).map_err(anyhow::Error::msg)?),
                payouts: format_address(&parse_address(&payouts).map_err(anyhow::Error::msg)?),
            };
            home.ensure_exists()?;
            deployment.save(&deployment_path(&home))?;
            println!("written to {}", deployment_path(&home).display());
            Ok(())
        }
        ChainCommand::Show => {
            match load_deployment(&home) {
                Ok(d) => println!(
                    "chain {}: anchor {}, token {}, payouts {}",
                    d.chain_id, d.anchor, d.token, d.payouts
                ),
                Err(e) => println!("{e}"),
            }
            match load_wallet(&home) {
                Ok(w) => println!("wallet {}", w.address_text()),
                Err(e) => println!("{e}"),
            }
            Ok(())
        }
    }
}

/// The chain of the contracts this home deployed or uses (chain.json), if any.
pub(crate) fn deployed_chain_id(home: &Home) -> Option<u64> {
    let path = deployment_path(home);
    path.exists()
        .then(|| Deployment::load(&path).ok().map(|d| d.chain_id))
        .flatten()
}

fn chain_id_for(node: &Node, given: Option<u64>) -> Result<u64> {
    match given {
        Some(id) => Ok(id),
        None => owner::settlement_chain(node)?.context(
            "say which chain with --chain-id (no chain.json here, and the ledger names no chain yet)",
        ),
    }
}

/// Runs `fedpool wallet …`.
pub fn wallet(home: Home, command: WalletCommand) -> Result<()> {
    match command {
        WalletCommand::New => {
            let path = wallet_path(&home);
            home.ensure_exists()?;
            let wallet = EvmWallet::generate()?;
            wallet.save(&path)?;
            println!("{}", wallet.address_text());
            eprintln!("key written to {} (owner-only)", path.display());
            Ok(())
        }
        WalletCommand::Message {
            address,
            chain_id,
            unlink,
        } => {
            let node = Node::open(home)?;
            let address = parse_address(&address).map_err(anyhow::Error::msg)?;
            let chain_id = chain_id_for(&node, chain_id)?;
            let action = if unlink {
                WalletAction::Unlink
            } else {
                WalletAction::Link
            };
            let challenge = owner::wallet_challenge(&node, action, chain_id, &address)?;
            println!("{}", challenge.message);
            Ok(())
        }
        WalletCommand::Link(args) => link(home, args, WalletAction::Link),
        WalletCommand::Unlink(args) => link(home, args, WalletAction::Unlink),
        WalletCommand::Show { json } => {
            let node = Node::open(home)?;
            let linked: Vec<(u64, String)> = owner::linked_wallets(&node)?
                .into_iter()
                .map(|(chain, address)| (chain, format_address(&address)))
                .collect();
            let own = load_wallet(&node.home).ok().map(|w| w.address_text());
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({
                        "wallet": own,
                        "linked": linked.iter().map(|(chain, a)| json!({"chain_id": chain, "address": a})).collect::<Vec<_>>(),
                    }))?
                );
            } else {
                println!("wallet key: {}", own.as_deref().unwrap_or("none"));
                if linked.is_empty() {
                    println!("no wallet linked: rewards stay as credit on the ledger");
                }
                for (chain, address) in linked {
                    println!("linked on chain {chain}: {address}");
                }
            }
            Ok(())
        }
    }
}

fn link(home: Home, args: LinkArgs, action: WalletAction) -> Result<()> {
    let mut node = Node::open(home)?;
    let chain_id = chain_id_for(&node, args.chain_id)?;
    let (address, signature) = match (&args.address, &args.signature) {
        (Some(address), Some(signature)) => {
            let address = parse_address(address).map_err(anyhow::Error::msg)?;
            let signature = parse_signature(signature).map_err(anyhow::Error::msg)?;
            (address, signature)
        }
        _ => {
            let wallet = load_wallet(&node.home)?;
            let address = wallet.address();
            let challenge = owner::wallet_challenge(&node, action, chain_id, &address)?;
            let signature = wallet
                .sign_message(&challenge.message)
                .map_err(anyhow::Error::msg)?;
            (address, signature)
        }
    };
    let proof = owner::WalletProof {
        chain_id,
        address,
        signature,
        signed_seq: None,
    };
    let where_to_sign = format!(
        "the text `fedpool wallet message --address {}{}` prints",
        format_address(&address),
        if action == WalletAction::Unlink {
            " --unlink"
        } else {
            ""
        }
    );
    let event = owner::link_wallet(&mut node, action, &proof, &where_to_sign)?;
    println!(
        "{} {} on chain {chain_id} (event {})",
        match action {
            WalletAction::Link => "linked",
            WalletAction::Unlink => "unlinked",
        },
        format_address(&address),
        event.id()
    );
    Ok(())
}

/// One anchoring, as done.
pub(crate) struct Anchored {
    root: [u8; 32],
    heads: usize,
    receipt: fedpool_chain::AnchorReceipt,
    event: EventId,
}

/// Anchors this node's ledger heads with its wallet and records the anchor. With
/// `skip_unchanged`, does nothing (`None`) when no chain but this node's own anchor event moved
/// since its last anchor (so a periodic anchor costs nothing on an idle ledger).
pub(crate) async fn anchor_heads(
    home: &Home,
    rpc: &RpcArgs,
    skip_unchanged: bool,
) -> Result<Option<Anchored>> {
    let mut node = Node::open(home.clone())?;
    let deployment = load_deployment(home)?;
    let wallet = load_wallet(home)?;
    let fedpool_chain::ContractAddresses {
        anchor: contract, ..
    } = deployment.addresses()?;
    let connect = || async {
        let client = ChainClient::connect(&rpc.rpc, Some(wallet.clone()), rpc.retry()).await?;
        client.check_deployment(&deployment).await?;
        Ok::<_, fedpool_chain::ChainError>(client)
    };
    // An anchor an earlier run left unrecorded is recorded first, before the heads are read.
    let mut client = None;
    if anchor_pending_path(home).exists() {
        let connected = connect().await?;
        finish_pending_anchor(&mut node, &connected, &deployment, contract).await?;
        client = Some(connected);
    }
    let heads: Vec<ChainHead> = node
        .store
        .heads()?
        .into_iter()
        .map(|(author, seq, id)| ChainHead { author, seq, id })
        .collect();
    if heads.is_empty() {
        bail!("the ledger is empty: nothing to anchor");
    }
    if skip_unchanged {
        let mine = node.store.events_by_author(&node.did())?;
        if let Some(Body::ChainAnchored(last)) = mine.last().map(|e| e.body()) {
            let others = |list: &[ChainHead]| -> Vec<ChainHead> {
                list.iter()
                    .filter(|h| h.author != node.did())
                    .cloned()
                    .collect()
            };
            if others(&last.heads) == others(&heads) {
                return Ok(None);
            }
        }
    }
    let root = heads_root(&heads);
    let client = match client {
        Some(client) => client,
        None => connect().await?,
    };
    let pending = anchor_pending_path(home);
    fedpool_ledger::replace_file(
        &pending,
        &serde_json::to_vec_pretty(&PendingAnchor {
            chain_id: deployment.chain_id,
            contract: format_address(&contract),
            root: hex(&root),
            heads: heads.clone(),
        })?,
    )?;
    let receipt = client.anchor(&deployment, root, heads.len() as u64).await?;
    if std::env::var_os("FEDPOOL_FAULT_EXIT_AFTER_ANCHOR_TX").is_some() {
        // Tests: a crash after the chain took the anchor and before the ledger recorded it.
        std::process::exit(3);
    }
    let event = record_anchor(
        &mut node,
        &deployment,
        contract,
        root,
        heads.clone(),
        &receipt,
    )?;
    std::fs::remove_file(&pending)?;
    Ok(Some(Anchored {
        root,
        heads: heads.len(),
        receipt,
        event: event.id(),
    }))
}

fn record_anchor(
    node: &mut Node,
    deployment: &Deployment,
    contract: [u8; 20],
    root: [u8; 32],
    heads: Vec<ChainHead>,
    receipt: &fedpool_chain::AnchorReceipt,
) -> Result<fedpool_ledger::Event> {
    node.append(ChainAnchored {
        chain_id: deployment.chain_id,
        contract,
        anchor_index: receipt.index,
        block_number: receipt.block_number,
        tx_hash: receipt.tx_hash,
        root,
        heads,
    })
}

/// Records the anchor an earlier run wrote ahead, if the chain took it and the ledger does
/// not hold it yet; one the chain never took is dropped (the new anchor covers its heads).
async fn finish_pending_anchor(
    node: &mut Node,
    client: &ChainClient,
    deployment: &Deployment,
    contract: [u8; 20],
) -> Result<()> {
    let path = anchor_pending_path(&node.home);
    if !path.exists() {
        return Ok(());
    }
    let pending: PendingAnchor = serde_json::from_slice(&std::fs::read(&path)?)
        .with_context(|| format!("{} is not a pending anchor", path.display()))?;
    if pending.chain_id != deployment.chain_id || pending.contract != format_address(&contract) {
        bail!(
            "{} holds an unfinished anchor for contract {} on chain {}; point chain.json back at it (`fedpool chain use`) and anchor once, or remove the file",
            path.display(),
            pending.contract,
            pending.chain_id
        );
    }
    let root = heads_root(&pending.heads);
    if hex(&root) != pending.root {
        bail!("{}: its heads do not give its root", path.display());
    }
    let recorded = node.store.events_by_author(&node.did())?.iter().any(
        |e| matches!(e.body(), Body::ChainAnchored(a) if a.root == root && a.contract == contract),
    );
    if !recorded && let Some(receipt) = client.find_anchor(deployment, root).await? {
        tracing::warn!(
            "anchor {} was on chain but not on the ledger (an earlier run stopped); recorded now",
            receipt.index
        );
        record_anchor(node, deployment, contract, root, pending.heads, &receipt)?;
    }
    std::fs::remove_file(&path)?;
    Ok(())
}

impl Anchored {
    fn describe(&self) -> String {
        format!(
            "anchored {} (root {}) as anchor {} in block {} (tx {}, {} gas); recorded as event {}",
            count(self.heads, "chain head"),
            hex(&self.root),
            self.receipt.index,
            self.receipt.block_number,
            hex(&self.receipt.tx_hash),
            self.receipt.gas_used,
            self.event
        )
    }
}

/// Anchors every `every` while a node runs (`node run --anchor-every`); a failure is logged and
/// tried again at the next tick.
pub(crate) async fn anchor_periodically(home: Home, rpc: RpcArgs, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        match anchor_heads(&home, &rpc, true).await {
            Ok(Some(done)) => tracing::info!("{}", done.describe()),
            Ok(None) => tracing::debug!("nothing new to anchor"),
            Err(e) => tracing::warn!("periodic anchoring failed (retried next time): {e:#}"),
        }
    }
}

/// Runs `fedpool anchor`.
pub fn anchor(home: Home, args: AnchorArgs) -> Result<()> {
    let done = runtime()?
        .block_on(anchor_heads(&home, &args.rpc, false))?
        .expect("anchoring without skip always anchors");
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "root": hex(&done.root),
                "heads": done.heads,
                "anchor_index": done.receipt.index,
                "block": done.receipt.block_number,
                "tx": hex(&done.receipt.tx_hash),
                "gas_used": done.receipt.gas_used,
                "event": done.event.to_string(),
            }))?
        );
    } else {
        println!("{}", done.describe());
    }
    Ok(())
}

/// A batch written before it is sent.
#[derive(Debug, Serialize, Deserialize)]
struct PendingBatch {
    model_id: String,
    chain_id: u64,
    nonce: u64,
    transfers: Vec<(String, String, u64)>,
    covers: Vec<String>,
}

/// What a model's publisher owes and has settled, per owner, from its ledger.
struct Owed {
    owed: BTreeMap<Did, u64>,
    settled: HashMap<Did, u64>,
    covers: Vec<EventId>,
    next_nonce: u64,
}

fn owed(node: &Node, model: &node::PublishedModel) -> Result<Owed> {
    let me = node.did();
    let mut owed = Owed {
        owed: BTreeMap::new(),
        settled: HashMap::new(),
        covers: Vec::new(),
        next_nonce: 1,
    };
    for event in node.store.events_by_model(model.id())? {
        if event.author() != me {
            continue;
        }
        match event.body() {
            Body::RewardsPaid(paid) => {
                owed.covers.push(event.id());
                for line in &paid.payouts {
                    *owed.owed.entry(line.owner).or_default() += line.amount;
                }
            }
            Body::RewardsSettled(settled) => {
                owed.next_nonce = owed.next_nonce.max(settled.nonce + 1);
                for transfer in &settled.transfers {
                    *owed.settled.entry(transfer.owner).or_default() += transfer.amount;
                }
            }
            _ => {}
        }
    }
    Ok(owed)
}

/// Runs `fedpool settle`.
pub fn settle(home: Home, args: SettleArgs) -> Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let mut node = Node::open(home)?;
    let model = node::find_model(&node.store, &args.model)?;
    if model.event.author() != node.did() {
        bail!(
            "model {} was published by {}; only its publisher pays its rewards",
            model.body.name,
            model.event.author()
        );
    }
    let deployment = load_deployment(&node.home)?;
    let wallet = load_wallet(&node.home)?;
    let token = deployment.addresses()?.token;
    let rt = runtime()?;
    let client = rt.block_on(async {
        let client = ChainClient::connect(&args.rpc.rpc, Some(wallet), args.rpc.retry()).await?;
        client.check_deployment(&deployment).await?;
        Ok::<_, fedpool_chain::ChainError>(client)
    })?;
    let key = model_key(model.id());
    let mut report = Vec::new();

    // A batch an earlier run wrote ahead and did not record: finish it first, same nonce.
    let pending = pending_path(&node.home);
    if pending.exists() {
        let batch: PendingBatch = serde_json::from_slice(&std::fs::read(&pending)?)
            .with_context(|| format!("{} is not a pending batch", pending.display()))?;
        if batch.model_id == model.id().as_str() {
            // Recorded already (the run stopped between the ledger and removing the file)?
            let recorded = node.store.events_by_model(model.id())?.iter().any(|e| {
                e.author() == node.did()
                    && matches!(e.body(), Body::RewardsSettled(s) if s.nonce == batch.nonce)
            });
            if !recorded {
                let line = send_batch(&rt, &mut node, &client, &deployment, key, batch)?;
                report.push(line);
            }
            std::fs::remove_file(&pending)?;
        } else {
            bail!(
                "{} holds an unfinished batch of model {}: settle that model first",
                pending.display(),
                batch.model_id
            );
        }
    }

    // A batch the ledger records but the chain does not hold (a reorganisation dropped it): send
    // it again under its own nonce, so its owners are paid what the ledger says, once. The
    // record keeps naming the dropped transaction; `verify --anchors` says so.
    let me = client.address().expect("a client with a wallet");
    let current = deployment.addresses()?;
    for event in node.store.events_by_model(model.id())? {
        let Body::RewardsSettled(recorded) = event.body() else {
            continue;
        };
        // Only batches of this deployment can be checked and resent through it.
        if event.author() != node.did()
            || recorded.chain_id != deployment.chain_id
            || recorded.payouts_contract != current.payouts
            || recorded.token != current.token
        {
            continue;
        }
        if rt.block_on(client.is_settled(recorded.payouts_contract, me, key, recorded.nonce))? {
            continue;
        }
        let transfers: Vec<([u8; 20], u64)> = recorded
            .transfers
            .iter()
            .map(|t| (t.address, t.amount))
            .collect();
        let receipt = rt.block_on(client.settle(&deployment, key, recorded.nonce, &transfers))?;
        tracing::warn!(
            "batch {} was recorded in tx {} but is not on chain (reorganised?); sent again as tx {}",
            recorded.nonce,
            hex(&recorded.tx_hash),
            hex(&receipt.tx_hash)
        );
        // The ledger names the transaction that now carries the batch, so `verify --anchors`
        // finds it paid (once) rather than lost.
        node.append(SettlementResent {
            model_id: model.id().clone(),
            settlement: event.id(),
            nonce: recorded.nonce,
            block_number: receipt.block_number,
            tx_hash: receipt.tx_hash,
        })?;
        report.push(json!({
            "nonce": recorded.nonce,
            "transfers": transfers.len(),
            "total": transfers.iter().map(|(_, amount)| amount).sum::<u64>(),
            "block": receipt.block_number,
            "tx": hex(&receipt.tx_hash),
            "gas_used": receipt.gas_used,
            "gas_per_transfer": receipt.gas_used / transfers.len().max(1) as u64,
            "sent_now": receipt.sent_now,
            "resent": true,
            "recorded_tx": hex(&recorded.tx_hash),
        }));
    }

    let state = owed(&node, &model)?;
    let events = node.store.events()?;
    let refs: Vec<_> = events.iter().collect();
    let links = WalletLinks::from_events(node.store.network(), &refs);
    let mut due = Vec::new();
    let mut credit = Vec::new();
    for (owner, total) in &state.owed {
        let unsettled = total - state.settled.get(owner).copied().unwrap_or(0).min(*total);
        if unsettled == 0 {
            continue;
        }
        match links.linked_now(owner, deployment.chain_id) {
            Some(address) => due.push((*owner, address, unsettled)),
            None => credit.push((*owner, unsettled)),
        }
    }
    for (nonce, chunk) in (state.next_nonce..).zip(due.chunks(args.batch_size)) {
        let batch = PendingBatch {
            model_id: model.id().as_str().to_string(),
            chain_id: deployment.chain_id,
            nonce,
            transfers: chunk
                .iter()
                .map(|(owner, address, amount)| {
                    (owner.to_string(), format_address(address), *amount)
                })
                .collect(),
            covers: state.covers.iter().map(|id| id.to_string()).collect(),
        };
        fedpool_ledger::replace_file(&pending, &serde_json::to_vec_pretty(&batch)?)?;
        let line = send_batch(&rt, &mut node, &client, &deployment, key, batch)?;
        std::fs::remove_file(&pending)?;
        report.push(line);
    }

    // Every owner of the model with a linked wallet: what its wallet holds now.
    let linked: Vec<(Did, [u8; 20])> = state
        .owed
        .keys()
        .filter_map(|owner| {
            links
                .linked_now(owner, deployment.chain_id)
                .map(|address| (*owner, address))
        })
        .collect();
    let balances: Vec<_> = rt.block_on(async {
        let mut balances = Vec::new();
        for (owner, address) in &linked {
            balances.push((*owner, *address, client.balance_of(token, *address).await?));
        }
        Ok::<_, fedpool_chain::ChainError>(balances)
    })?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "model_id": model.id().as_str(),
                "batches": report,
                "credit": credit.iter().map(|(owner, amount)| json!({"owner": owner.to_string(), "amount": amount})).collect::<Vec<_>>(),
                "balances": balances.iter().map(|(owner, address, balance)| json!({"owner": owner.to_string(), "address": format_address(address), "balance": balance.to_string()})).collect::<Vec<_>>(),
            }))?
        );
    } else {
        if report.is_empty() {
            println!(
                "nothing to settle for {}: every linked owner is paid",
                model.body.name
            );
        }
        for line in &report {
            println!(
                "batch {}: {} to {} in block {} (tx {}), {} gas ({} a transfer){}",
                line["nonce"],
                line["total"],
                count(line["transfers"].as_u64().unwrap_or(0) as usize, "wallet"),
                line["block"],
                line["tx"].as_str().unwrap_or(""),
                line["gas_used"],
                line["gas_per_transfer"],
                if line["resent"] == json!(true) {
                    " — recorded before but dropped by the chain: sent again under its nonce"
                } else if line["sent_now"] == json!(false) {
                    " — found on chain from an earlier attempt, not sent again"
                } else {
                    ""
                }
            );
        }
        for (owner, amount) in &credit {
            println!(
                "{owner}: {amount} kept as credit (no wallet linked on chain {})",
                deployment.chain_id
            );
        }
    }
    Ok(())
}

fn send_batch(
    rt: &tokio::runtime::Runtime,
    node: &mut Node,
    client: &ChainClient,
    deployment: &Deployment,
    key: [u8; 32],
    batch: PendingBatch,
) -> Result<serde_json::Value> {
    let mut transfers = Vec::with_capacity(batch.transfers.len());
    for (owner, address, amount) in &batch.transfers {
        transfers.push(Transfer {
            owner: owner.parse().context("pending batch: owner")?,
            address: parse_address(address).map_err(anyhow::Error::msg)?,
            amount: *amount,
        });
    }
    let covers = batch
        .covers
        .iter()
        .map(|id| id.parse::<EventId>())
        .collect::<Result<Vec<_>, _>>()
        .context("pending batch: covers")?;
    let on_chain: Vec<([u8; 20], u64)> = transfers.iter().map(|t| (t.address, t.amount)).collect();
    let receipt = rt.block_on(client.settle(deployment, key, batch.nonce, &on_chain))?;
    if std::env::var_os("FEDPOOL_FAULT_EXIT_AFTER_SETTLE_TX").is_some() {
        // Tests: a crash after the chain took the batch and before the ledger recorded it.
        std::process::exit(3);
    }
    let fedpool_chain::ContractAddresses {
        token,
        payouts: payouts_contract,
        ..
    } = deployment.addresses()?;
    let total: u64 = transfers.iter().map(|t| t.amount).sum();
    let n = transfers.len();
    let event = node.append(RewardsSettled {
        model_id: batch.model_id.clone().into(),
        chain_id: batch.chain_id,
        payouts_contract,
        token,
        nonce: batch.nonce,
        block_number: receipt.block_number,
        tx_hash: receipt.tx_hash,
        transfers,
        covers,
    })?;
    Ok(json!({
        "nonce": batch.nonce,
        "transfers": n,
        "total": total,
        "block": receipt.block_number,
        "tx": hex(&receipt.tx_hash),
        "gas_used": receipt.gas_used,
        "gas_per_transfer": receipt.gas_used / n.max(1) as u64,
        "sent_now": receipt.sent_now,
        "event": event.id().to_string(),
    }))
}
