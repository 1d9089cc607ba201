//! [`ChainClient`]: every call fedpool makes to an EVM chain, retried through an endpoint that
//! goes away, each write safe to retry.
//!
//! A write is never blindly sent twice: before (re)sending a settlement the client asks the
//! payout contract whether the batch's nonce is already spent, and before (re)sending an anchor
//! it looks for its own `Anchored` event with the same root. A transaction lost with the node
//! (a restart, a reorganisation) is sent again; one that landed is found and reported. The
//! payout contract refuses a spent nonce anyway, so even two copies in flight pay once.

use std::time::{Duration, Instant};

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{Filter, TransactionReceipt, TransactionRequest};
use alloy::sol_types::{SolEvent, SolValue};
use alloy::transports::{RpcError, TransportErrorKind};
use tracing::{debug, warn};

use crate::contracts::{self, FedpoolAnchor, FedpoolPayouts, FedpoolRewardToken};
use crate::{ChainError, Deployment, EvmWallet};

/// How long to keep trying a chain that does not answer.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    /// Give up after this long without an answer.
    pub total: Duration,
    /// How long to wait for a sent transaction's receipt before asking again whether it
    /// landed.
    pub receipt_timeout: Duration,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            total: Duration::from_secs(60),
            receipt_timeout: Duration::from_secs(30),
        }
    }
}

/// An anchoring transaction, as included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnchorReceipt {
    /// The anchor's index in the contract.
    pub index: u64,
    /// The block it was included in.
    pub block_number: u64,
    /// Its hash.
    pub tx_hash: [u8; 32],
    /// Gas it used.
    pub gas_used: u64,
}

/// An anchor as the contract holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnchorOnChain {
    /// The root.
    pub root: [u8; 32],
    /// How many heads the submitter said it covers.
    pub heads: u64,
    /// The block it was made in.
    pub block_number: u64,
    /// Who submitted it.
    pub submitter: [u8; 20],
}

/// An anchor as its `Anchored` event tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnchorLogged {
    /// Its index in the contract.
    pub index: u64,
    /// The root.
    pub root: [u8; 32],
    /// The block that holds it.
    pub block_number: u64,
    /// The transaction that made it.
    pub tx_hash: [u8; 32],
}

/// A payout batch as its `Settled` event tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettledLog {
    /// The payout contract that emitted it.
    pub contract: [u8; 20],
    /// Who paid.
    pub payer: [u8; 20],
    /// The model's key ([`crate::model_key`]).
    pub model_key: [u8; 32],
    /// The batch's nonce.
    pub nonce: u64,
    /// The token paid.
    pub token: [u8; 20],
    /// The sum of its transfers.
    pub total: U256,
    /// How many transfers.
    pub count: U256,
}

/// A settlement batch, as included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettleReceipt {
    /// The block it was included in.
    pub block_number: u64,
    /// Its hash.
    pub tx_hash: [u8; 32],
    /// Gas it used.
    pub gas_used: u64,
    /// Whether this call sent it (false: an earlier attempt's transaction had landed).
    pub sent_now: bool,
}

/// A connection to one chain, with a wallet for writes.
pub struct ChainClient {
    url: String,
    provider: DynProvider,
    wallet: Option<EvmWallet>,
    chain_id: u64,
    retry: Retry,
}

/// One failed attempt: worth another try (the endpoint did not answer) or not (it answered,
/// with an error).
enum Attempt {
    Retry(String),
    Refused(String),
}

fn classify(error: &RpcError<TransportErrorKind>) -> Attempt {
    match error {
        RpcError::Transport(_) | RpcError::NullResp => Attempt::Retry(error.to_string()),
        other => Attempt::Refused(other.to_string()),
    }
}

fn transport<T>(result: Result<T, RpcError<TransportErrorKind>>) -> Result<T, Attempt> {
    result.map_err(|e| classify(&e))
}

fn contract_call<T>(result: Result<T, alloy::contract::Error>) -> Result<T, Attempt> {
    result.map_err(|e| match &e {
        alloy::contract::Error::TransportError(rpc) => classify(rpc),
        other => Attempt::Refused(other.to_string()),
    })
}

impl ChainClient {
    /// Connects to `url`, reading the chain id (retrying while the endpoint does not answer).
    /// `wallet` signs writes; without one the client only reads.
    pub async fn connect(
        url: &str,
        wallet: Option<EvmWallet>,
        retry: Retry,
    ) -> Result<ChainClient, ChainError> {
        let parsed =
            alloy::transports::http::reqwest::Url::parse(url).map_err(|e| ChainError::BadUrl {
                url: url.into(),
                reason: e.to_string(),
            })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ChainError::BadUrl {
                url: url.into(),
                reason: "only http:// and https:// endpoints are supported".into(),
            });
        }
        let provider = match &wallet {
            Some(wallet) => ProviderBuilder::default()
                .with_gas_estimation()
                // A node that restarted may have lost pending transactions: ask for the account's
                // nonce every time rather than trusting a cached one.
                .with_simple_nonce_management()
                .fetch_chain_id()
                .wallet(wallet.signer().clone())
                .connect_http(parsed)
                .erased(),
            None => ProviderBuilder::default().connect_http(parsed).erased(),
        };
        let mut client = ChainClient {
            url: url.into(),
            provider,
            wallet,
            chain_id: 0,
            retry,
        };
        let provider = client.provider.clone();
        client.chain_id = client
            .retrying("did not give its chain id", || {
                let provider = provider.clone();
                async move { transport(provider.get_chain_id().await) }
            })
            .await?;
        Ok(client)
    }

    /// The chain's EIP-155 id.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The endpoint.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The wallet's address, if the client has one.
    pub fn address(&self) -> Option<[u8; 20]> {
        self.wallet.as_ref().map(EvmWallet::address)
    }

    async fn retrying<T, F, Fut>(&self, action: &str, mut attempt: F) -> Result<T, ChainError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Attempt>>,
    {
        let started = Instant::now();
        let mut pause = Duration::from_millis(200);
        loop {
            match attempt().await {
                Ok(value) => return Ok(value),
                Err(Attempt::Refused(reason)) => {
                    return Err(ChainError::Rpc {
                        url: self.url.clone(),
                        action: action.into(),
                        reason,
                    });
                }
                Err(Attempt::Retry(reason)) => {
                    if started.elapsed() + pause > self.retry.total {
                        return Err(ChainError::Rpc {
                            url: self.url.clone(),
                            action: action.into(),
                            reason,
                        });
                    }
                    debug!(action, %reason, "chain did not answer; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    fn writer(&self) -> Result<Address, ChainError> {
        self.wallet
            .as_ref()
            .map(|w| Address::from(w.address()))
            .ok_or_else(|| ChainError::File {
                path: "(wallet)".into(),
                reason: "this command writes to the chain and needs a wallet".into(),
            })
    }

    /// Checks that `deployment` is for this chain and its contracts have code.
    pub async fn check_deployment(&self, deployment: &Deployment) -> Result<(), ChainError> {
        if deployment.chain_id != self.chain_id {
            return Err(ChainError::WrongChain {
                expected: deployment.chain_id,
                found: self.chain_id,
                what: "the deployment in chain.json".into(),
            });
        }
        let crate::ContractAddresses {
            anchor,
            token,
            payouts,
        } = deployment.addresses()?;
        for (what, address) in [("anchor", anchor), ("token", token), ("payouts", payouts)] {
            let provider = self.provider.clone();
            let code: Bytes = self
                .retrying("did not return contract code", || {
                    let provider = provider.clone();
                    async move { transport(provider.get_code_at(Address::from(address)).await) }
                })
                .await?;
            if code.is_empty() {
                return Err(ChainError::NoContract {
                    address: Address::from(address).to_checksum(None),
                    chain_id: self.chain_id,
                    what: what.into(),
                });
            }
        }
        Ok(())
    }

    /// Deploys the anchor, a reward token holding `supply` units for this wallet, and the
    /// payout contract.
    pub async fn deploy(
        &self,
        token_name: &str,
        token_symbol: &str,
        supply: u64,
    ) -> Result<Deployment, ChainError> {
        let me = self.writer()?;
        let anchor = self
            .deploy_code("the anchor contract", contracts::anchor_bytecode()?)
            .await?;
        let mut token_code = contracts::token_bytecode()?.to_vec();
        token_code.extend(
            (
                token_name.to_string(),
                token_symbol.to_string(),
                me,
                U256::from(supply),
            )
                .abi_encode_params(),
        );
        let token = self
            .deploy_code("the reward token", token_code.into())
            .await?;
        let payouts = self
            .deploy_code("the payout contract", contracts::payouts_bytecode()?)
            .await?;
        Ok(Deployment {
            chain_id: self.chain_id,
            anchor: anchor.to_checksum(None),
            token: token.to_checksum(None),
            payouts: payouts.to_checksum(None),
        })
    }

    async fn deploy_code(&self, what: &str, code: Bytes) -> Result<Address, ChainError> {
        let receipt = self
            .send_once(
                &format!("did not deploy {what}"),
                TransactionRequest::default().with_deploy_code(code),
            )
            .await?;
        receipt
            .contract_address
            .ok_or_else(|| ChainError::Reverted {
                action: format!("deploying {what}"),
                tx: receipt.transaction_hash.to_string(),
            })
    }

    /// Sends a transaction that is harmless to repeat and waits for its receipt; a reverted
    /// one is an error.
    async fn send_once(
        &self,
        action: &str,
        request: TransactionRequest,
    ) -> Result<TransactionReceipt, ChainError> {
        let provider = self.provider.clone();
        let timeout = self.retry.receipt_timeout;
        let receipt = self
            .retrying(action, || {
                let provider = provider.clone();
                let request = request.clone();
                async move {
                    let pending = transport(provider.send_transaction(request).await)?;
                    pending
                        .with_timeout(Some(timeout))
                        .get_receipt()
                        .await
                        .map_err(|e| Attempt::Retry(e.to_string()))
                }
            })
            .await?;
        if !receipt.status() {
            return Err(ChainError::Reverted {
                action: action.trim_start_matches("did not ").into(),
                tx: receipt.transaction_hash.to_string(),
            });
        }
        Ok(receipt)
    }

    /// Puts `root` (covering `heads` chain heads) into the anchor contract; if an earlier
    /// attempt's anchor of the same root by this wallet landed, returns that one instead.
    pub async fn anchor(
        &self,
        deployment: &Deployment,
        root: [u8; 32],
        heads: u64,
    ) -> Result<AnchorReceipt, ChainError> {
        let me = self.writer()?;
        let crate::ContractAddresses { anchor, .. } = deployment.addresses()?;
        let started = Instant::now();
        loop {
            if let Some(found) = self.find_anchor_by(anchor, me, root).await? {
                return Ok(found);
            }
            let contract = FedpoolAnchor::new(Address::from(anchor), self.provider.clone());
            let request = contract
                .anchor(B256::from(root), heads)
                .into_transaction_request();
            match self.try_send(request).await {
                Ok(receipt) if receipt.status() => {
                    let index = receipt
                        .logs()
                        .iter()
                        .find_map(|log| log.log_decode::<FedpoolAnchor::Anchored>().ok())
                        .map(|log| log.inner.data.index)
                        .ok_or_else(|| ChainError::Reverted {
                            action: "anchoring (no Anchored event)".into(),
                            tx: receipt.transaction_hash.to_string(),
                        })?;
                    return Ok(AnchorReceipt {
                        index: index.saturating_to(),
                        block_number: receipt.block_number.unwrap_or_default(),
                        tx_hash: receipt.transaction_hash.0,
                        gas_used: receipt.gas_used,
                    });
                }
                Ok(receipt) => {
                    return Err(ChainError::Reverted {
                        action: "anchoring".into(),
                        tx: receipt.transaction_hash.to_string(),
                    });
                }
                Err(reason) if started.elapsed() < self.retry.total => {
                    warn!(%reason, "anchoring did not complete; checking whether it landed, then retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(reason) => {
                    return Err(ChainError::Rpc {
                        url: self.url.clone(),
                        action: "did not take the anchor".into(),
                        reason,
                    });
                }
            }
        }
    }

    /// Sends once and waits for the receipt; any failure is reported for the caller to decide.
    async fn try_send(&self, request: TransactionRequest) -> Result<TransactionReceipt, String> {
        let pending = self
            .provider
            .send_transaction(request)
            .await
            .map_err(|e| e.to_string())?;
        pending
            .with_timeout(Some(self.retry.receipt_timeout))
            .get_receipt()
            .await
            .map_err(|e| e.to_string())
    }

    /// This wallet's anchor of `root` in the deployment's anchor contract, if it landed.
    pub async fn find_anchor(
        &self,
        deployment: &Deployment,
        root: [u8; 32],
    ) -> Result<Option<AnchorReceipt>, ChainError> {
        let me = self.writer()?;
        let crate::ContractAddresses { anchor, .. } = deployment.addresses()?;
        self.find_anchor_by(anchor, me, root).await
    }

    async fn find_anchor_by(
        &self,
        anchor: [u8; 20],
        submitter: Address,
        root: [u8; 32],
    ) -> Result<Option<AnchorReceipt>, ChainError> {
        let found = self.anchors_by(anchor, submitter.into_array()).await?;
        match found.into_iter().find(|logged| logged.root == root) {
            Some(logged) => Ok(Some(AnchorReceipt {
                index: logged.index,
                block_number: logged.block_number,
                tx_hash: logged.tx_hash,
                gas_used: self.gas_used(B256::from(logged.tx_hash)).await?,
            })),
            None => Ok(None),
        }
    }

    /// Every anchor `submitter` put into the `anchor` contract, oldest first (from the
    /// contract's `Anchored` events).
    pub async fn anchors_by(
        &self,
        anchor: [u8; 20],
        submitter: [u8; 20],
    ) -> Result<Vec<AnchorLogged>, ChainError> {
        let filter = Filter::new()
            .address(Address::from(anchor))
            .event_signature(FedpoolAnchor::Anchored::SIGNATURE_HASH)
            .topic2(Address::from(submitter).into_word())
            .from_block(0u64);
        let logs = self.logs("did not return anchor events", filter).await?;
        Ok(logs
            .iter()
            .filter_map(|log| {
                let decoded = log.log_decode::<FedpoolAnchor::Anchored>().ok()?;
                Some(AnchorLogged {
                    index: decoded.inner.data.index.saturating_to(),
                    root: decoded.inner.data.root.0,
                    block_number: log.block_number.unwrap_or_default(),
                    tx_hash: log.transaction_hash.unwrap_or_default().0,
                })
            })
            .collect())
    }

    async fn logs(
        &self,
        action: &str,
        filter: Filter,
    ) -> Result<Vec<alloy::rpc::types::Log>, ChainError> {
        let provider = self.provider.clone();
        self.retrying(action, || {
            let provider = provider.clone();
            let filter = filter.clone();
            async move { transport(provider.get_logs(&filter).await) }
        })
        .await
    }

    async fn gas_used(&self, tx: B256) -> Result<u64, ChainError> {
        let provider = self.provider.clone();
        let receipt = self
            .retrying("did not return a receipt", || {
                let provider = provider.clone();
                async move { transport(provider.get_transaction_receipt(tx).await) }
            })
            .await?;
        Ok(receipt.map_or(0, |r| r.gas_used))
    }

    /// The anchor at `index`, or `None` if the contract holds fewer.
    pub async fn anchor_at(
        &self,
        anchor: [u8; 20],
        index: u64,
    ) -> Result<Option<AnchorOnChain>, ChainError> {
        let contract = FedpoolAnchor::new(Address::from(anchor), self.provider.clone());
        let count: U256 = self
            .retrying("did not return the anchor count", || {
                let call = contract.count();
                async move { contract_call(call.call().await) }
            })
            .await?;
        if U256::from(index) >= count {
            return Ok(None);
        }
        let found = self
            .retrying("did not return an anchor", || {
                let call = contract.anchorAt(U256::from(index));
                async move { contract_call(call.call().await) }
            })
            .await?;
        Ok(Some(AnchorOnChain {
            root: found.root.0,
            heads: found.heads,
            block_number: found.blockNumber,
            submitter: found.submitter.into_array(),
        }))
    }

    async fn receipt(&self, tx: [u8; 32]) -> Result<Option<TransactionReceipt>, ChainError> {
        let provider = self.provider.clone();
        self.retrying("did not return a receipt", || {
            let provider = provider.clone();
            async move { transport(provider.get_transaction_receipt(B256::from(tx)).await) }
        })
        .await
    }

    /// The block `tx` was included in, if it was.
    pub async fn transaction_block(&self, tx: [u8; 32]) -> Result<Option<u64>, ChainError> {
        Ok(self.receipt(tx).await?.and_then(|r| r.block_number))
    }

    /// The block `tx` was included in and the payout batches it settled (the `Settled` events
    /// of its receipt), if it was included.
    pub async fn settlements_in(
        &self,
        tx: [u8; 32],
    ) -> Result<Option<(u64, Vec<SettledLog>)>, ChainError> {
        let Some(receipt) = self.receipt(tx).await? else {
            return Ok(None);
        };
        let Some(block) = receipt.block_number else {
            return Ok(None);
        };
        let batches = receipt
            .logs()
            .iter()
            .filter_map(|log| {
                let decoded = log.log_decode::<FedpoolPayouts::Settled>().ok()?;
                let event = &decoded.inner.data;
                Some(SettledLog {
                    contract: log.address().into_array(),
                    payer: event.payer.into_array(),
                    model_key: event.modelId.0,
                    nonce: event.nonce,
                    token: event.token.into_array(),
                    total: event.total,
                    count: event.count,
                })
            })
            .collect();
        Ok(Some((block, batches)))
    }

    /// The token balance of `holder`.
    pub async fn balance_of(&self, token: [u8; 20], holder: [u8; 20]) -> Result<U256, ChainError> {
        let contract = FedpoolRewardToken::new(Address::from(token), self.provider.clone());
        self.retrying("did not return a balance", || {
            let call = contract.balanceOf(Address::from(holder));
            async move { contract_call(call.call().await) }
        })
        .await
    }

    /// Whether this wallet's batch `nonce` of `model_key` is settled.
    pub async fn is_settled(
        &self,
        payouts: [u8; 20],
        payer: [u8; 20],
        model_key: [u8; 32],
        nonce: u64,
    ) -> Result<bool, ChainError> {
        let contract = FedpoolPayouts::new(Address::from(payouts), self.provider.clone());
        self.retrying("did not say whether a batch is settled", || {
            let call = contract.isSettled(Address::from(payer), B256::from(model_key), nonce);
            async move { contract_call(call.call().await) }
        })
        .await
    }

    /// Pays `transfers` (address, amount) as batch `nonce` of `model_key`, at most once:
    /// approves the payout contract for the batch, then sends it unless the nonce is already
    /// spent on chain (an earlier attempt landed: that one is returned), and sends it again if
    /// the chain lost it.
    pub async fn settle(
        &self,
        deployment: &Deployment,
        model_key: [u8; 32],
        nonce: u64,
        transfers: &[([u8; 20], u64)],
    ) -> Result<SettleReceipt, ChainError> {
        let me = self.writer()?;
        let crate::ContractAddresses { token, payouts, .. } = deployment.addresses()?;
        let total: u64 = transfers.iter().map(|(_, amount)| amount).sum();
        let started = Instant::now();
        loop {
            if self
                .is_settled(payouts, me.into_array(), model_key, nonce)
                .await?
            {
                return self.find_settlement(payouts, me, model_key, nonce).await;
            }
            let token_contract =
                FedpoolRewardToken::new(Address::from(token), self.provider.clone());
            let allowance: U256 = self
                .retrying("did not return the allowance", || {
                    let call = token_contract.allowance(me, Address::from(payouts));
                    async move { contract_call(call.call().await) }
                })
                .await?;
            if allowance < U256::from(total) {
                let approve = token_contract
                    .approve(Address::from(payouts), U256::from(total))
                    .into_transaction_request();
                self.send_once("did not approve the payout contract", approve)
                    .await?;
            }
            let contract = FedpoolPayouts::new(Address::from(payouts), self.provider.clone());
            let request = contract
                .settle(
                    B256::from(model_key),
                    nonce,
                    Address::from(token),
                    transfers.iter().map(|(to, _)| Address::from(*to)).collect(),
                    transfers
                        .iter()
                        .map(|(_, amount)| U256::from(*amount))
                        .collect(),
                )
                .into_transaction_request();
            match self.try_send(request).await {
                Ok(receipt) if receipt.status() => {
                    return Ok(SettleReceipt {
                        block_number: receipt.block_number.unwrap_or_default(),
                        tx_hash: receipt.transaction_hash.0,
                        gas_used: receipt.gas_used,
                        sent_now: true,
                    });
                }
                Ok(receipt) => {
                    // Reverted: settled meanwhile by another copy (then the loop finds it),
                    // or refused for good (balance, allowance).
                    if !self
                        .is_settled(payouts, me.into_array(), model_key, nonce)
                        .await?
                    {
                        return Err(ChainError::Reverted {
                            action: format!("settling batch {nonce}"),
                            tx: receipt.transaction_hash.to_string(),
                        });
                    }
                }
                Err(reason) if started.elapsed() < self.retry.total => {
                    warn!(nonce, %reason, "settlement did not complete; checking whether it landed, then retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(reason) => {
                    return Err(ChainError::Rpc {
                        url: self.url.clone(),
                        action: format!("did not take settlement batch {nonce}"),
                        reason,
                    });
                }
            }
        }
    }

    async fn find_settlement(
        &self,
        payouts: [u8; 20],
        payer: Address,
        model_key: [u8; 32],
        nonce: u64,
    ) -> Result<SettleReceipt, ChainError> {
        let filter = Filter::new()
            .address(Address::from(payouts))
            .event_signature(FedpoolPayouts::Settled::SIGNATURE_HASH)
            .topic1(payer.into_word())
            .topic2(B256::from(model_key))
            .topic3(B256::from(U256::from(nonce)))
            .from_block(0u64);
        let logs = self
            .logs("did not return settlement events", filter)
            .await?;
        let log = logs.first().ok_or_else(|| ChainError::Rpc {
            url: self.url.clone(),
            action: format!("says batch {nonce} is settled but shows no Settled event for it"),
            reason: "no log".into(),
        })?;
        let tx = log.transaction_hash.unwrap_or_default();
        Ok(SettleReceipt {
            block_number: log.block_number.unwrap_or_default(),
            tx_hash: tx.0,
            gas_used: self.gas_used(tx).await?,
            sent_now: false,
        })
    }
}
