//! EVM wallets linked to DIDs: the messages a wallet signs (EIP-191 `personal_sign`) and the
//! check that a link event's wallet signature is the linked address's.
//!
//! The message names everything the link binds — the network, the DID, the address, the chain
//! and the seq of the event that carries it — so a wallet's signature cannot be replayed for
//! another node, another network or a later event (an old link re-announced after an unlink).

use std::fmt;

use alloy_primitives::{Address, Signature};

use crate::{Did, NetworkId};

/// Whether the wallet signs a link or an unlink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalletAction {
    /// Link the address to the DID.
    Link,
    /// Unlink it.
    Unlink,
}

impl fmt::Display for WalletAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WalletAction::Link => "link",
            WalletAction::Unlink => "unlink",
        })
    }
}

/// The text the wallet signs (shown to its holder by any wallet that implements
/// `personal_sign`).
pub fn wallet_message(
    action: WalletAction,
    network: &NetworkId,
    did: &Did,
    chain_id: u64,
    address: &[u8; 20],
    seq: u64,
) -> String {
    let address = Address::from(*address).to_checksum(None);
    let verb = match action {
        WalletAction::Link => {
            "I link this wallet to my fedpool identity; rewards may be paid to it."
        }
        WalletAction::Unlink => "I unlink this wallet from my fedpool identity.",
    };
    format!(
        "fedpool wallet {action}\n{verb}\nnetwork: {network}\nidentity: {did}\nwallet: {address}\nchain id: {chain_id}\nledger seq: {seq}"
    )
}

/// The address that signed `message` under EIP-191, or why the signature cannot be read.
pub fn recover_signer(message: &str, signature: &[u8; 65]) -> Result<[u8; 20], String> {
    let signature =
        Signature::from_raw_array(signature).map_err(|e| format!("not a signature: {e}"))?;
    let address = signature
        .recover_address_from_msg(message.as_bytes())
        .map_err(|e| format!("no address recovers from it: {e}"))?;
    Ok(address.into_array())
}

/// An address as EIP-55 checksummed hex, e.g. `0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266`.
pub fn format_address(address: &[u8; 20]) -> String {
    Address::from(*address).to_checksum(None)
}

/// Parses `0x` and 40 hex digits (a mixed-case address must carry a valid EIP-55 checksum).
pub fn parse_address(text: &str) -> Result<[u8; 20], String> {
    let trimmed = text.trim();
    let digits = trimmed.strip_prefix("0x").unwrap_or(trimmed);
    let mixed_case = digits.chars().any(|c| c.is_ascii_uppercase())
        && digits.chars().any(|c| c.is_ascii_lowercase());
    let address = if mixed_case {
        Address::parse_checksummed(trimmed, None)
            .map_err(|e| format!("`{text}` is not a checksummed EVM address: {e}"))?
    } else {
        trimmed
            .parse::<Address>()
            .map_err(|e| format!("`{text}` is not an EVM address (0x and 40 hex digits): {e}"))?
    };
    Ok(address.into_array())
}

/// Parses a 65-byte signature as `0x` and 130 hex digits (what `personal_sign` returns).
pub fn parse_signature(text: &str) -> Result<[u8; 65], String> {
    let trimmed = text.trim();
    let digits = trimmed.strip_prefix("0x").unwrap_or(trimmed);
    if digits.len() != 130 {
        return Err(format!(
            "a wallet signature is 65 bytes: 0x and 130 hex digits, got {} characters",
            digits.chars().count()
        ));
    }
    let bytes = parse_hex(digits)?;
    bytes
        .try_into()
        .map_err(|_| "a wallet signature is 65 bytes".to_string())
}

/// Bytes from hex digits, with or without a leading `0x`.
pub fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits = text.strip_prefix("0x").unwrap_or(text);
    if !digits.is_ascii() || !digits.len().is_multiple_of(2) {
        return Err("not an even number of hex digits".into());
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&digits[i..i + 2], 16)
                .map_err(|_| format!("`{}` is not hex", &digits[i..i + 2]))
        })
        .collect()
}

/// Lower-case `0x` hex of any bytes (transaction hashes, roots).
pub fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(2 + 2 * bytes.len());
    text.push_str("0x");
    for byte in bytes {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}
