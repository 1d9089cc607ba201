//! An EVM wallet's key on disk: owner-only (0600), refused if others can read it, never
//! printed (its `Debug` shows the address only).

use std::fmt;
use std::path::Path;

use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use zeroize::Zeroizing;

use crate::ChainError;

const HEADER: &str = "fedpool-evm-key-v1";

/// A local EVM signer.
#[derive(Clone)]
pub struct EvmWallet {
    signer: PrivateKeySigner,
}

impl fmt::Debug for EvmWallet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EvmWallet({})", self.address_text())
    }
}

impl EvmWallet {
    /// A new key from the operating system's CSPRNG.
    pub fn generate() -> Result<EvmWallet, ChainError> {
        let mut secret = Zeroizing::new([0u8; 32]);
        loop {
            getrandom::fill(secret.as_mut()).map_err(|e| ChainError::File {
                path: "(randomness)".into(),
                reason: e.to_string(),
            })?;
            // Zero or a value at or above the curve order is not a key (odds ≈ 2⁻¹²⁸).
            if let Ok(signer) = PrivateKeySigner::from_slice(secret.as_ref()) {
                return Ok(EvmWallet { signer });
            }
        }
    }

    /// A wallet from a 32-byte secret given as `0x` and 64 hex digits (an import, or a test
    /// chain's well-known account).
    pub fn from_hex(secret: &str) -> Result<EvmWallet, String> {
        let digits = secret.trim();
        let digits = digits.strip_prefix("0x").unwrap_or(digits);
        if digits.len() != 64 || !digits.is_ascii() {
            return Err("an EVM private key is 0x and 64 hex digits".into());
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16)
                .map_err(|_| "an EVM private key is 0x and 64 hex digits".to_string())?;
        }
        let signer = PrivateKeySigner::from_slice(bytes.as_ref())
            .map_err(|_| "not a valid secp256k1 private key".to_string())?;
        Ok(EvmWallet { signer })
    }

    /// Writes the key to a new file, owner-only.
    pub fn save(&self, path: &Path) -> Result<(), ChainError> {
        let secret = Zeroizing::new(
            self.signer
                .to_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
        );
        let content = Zeroizing::new(format!(
            "{HEADER}\n{}\n0x{}\n",
            self.address_text(),
            secret.as_str()
        ));
        fedpool_ledger::write_secret_file(path, content.as_bytes()).map_err(|e| ChainError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    /// Reads a key file written by [`EvmWallet::save`].
    pub fn load(path: &Path) -> Result<EvmWallet, ChainError> {
        let file_error = |reason: String| ChainError::File {
            path: path.display().to_string(),
            reason,
        };
        let bytes =
            fedpool_ledger::read_secret_file(path).map_err(|e| file_error(e.to_string()))?;
        let text = std::str::from_utf8(&bytes).map_err(|_| file_error("not UTF-8".into()))?;
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return Err(file_error(format!("first line is not `{HEADER}`")));
        }
        let address = lines
            .next()
            .ok_or_else(|| file_error("missing address line".into()))?;
        let secret = lines
            .next()
            .ok_or_else(|| file_error("missing key line".into()))?;
        let wallet = EvmWallet::from_hex(secret).map_err(file_error)?;
        if !wallet.address_text().eq_ignore_ascii_case(address.trim()) {
            return Err(file_error(
                "the key does not match the address line (file damaged or edited)".into(),
            ));
        }
        Ok(wallet)
    }

    /// The wallet's address.
    pub fn address(&self) -> [u8; 20] {
        self.signer.address().into_array()
    }

    /// The address, EIP-55 checksummed.
    pub fn address_text(&self) -> String {
        self.signer.address().to_checksum(None)
    }

    /// An EIP-191 `personal_sign` signature of `message` (r ‖ s ‖ v).
    pub fn sign_message(&self, message: &str) -> Result<[u8; 65], String> {
        let signature = self
            .signer
            .sign_message_sync(message.as_bytes())
            .map_err(|e| e.to_string())?;
        Ok(signature.as_bytes())
    }

    pub(crate) fn signer(&self) -> &PrivateKeySigner {
        &self.signer
    }
}
