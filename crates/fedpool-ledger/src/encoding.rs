//! Byte-level building blocks of the canonical event encoding, and content hashes.
//!
//! Every value has exactly one encoding, and the [`Reader`] rejects every other byte string
//! (wrong tags, trailing bytes, non-finite floats, invalid UTF-8), so
//! `encode(decode(bytes)) == bytes` for every accepted input. That is what makes an event id,
//! a hash of the encoding, a name for the content rather than for one of several spellings.
//!
//! | value | bytes |
//! | --- | --- |
//! | `u8`, `u32`, `u64` | fixed width, big-endian |
//! | `f64` | `u64` big-endian of `f64::to_bits`; must be finite |
//! | `bool`-like tag, `Option<T>` | `0x00` (none) or `0x01` followed by `T` |
//! | string | `u32` byte length, then UTF-8 bytes |
//! | `Vec<T>` | `u32` item count, then the items |
//! | DID | the 32-byte Ed25519 public key |
//! | event id | the 32-byte blake3 digest |

/// The most items a decoder reserves room for before it has decoded them; lists longer than
/// that grow as they decode, so memory follows the bytes that actually parse.
pub(crate) const PREALLOCATE_AT_MOST: usize = 64;

use crate::Error;

/// Content hash used for model ids, card hashes and dataset fingerprints: blake3 of `bytes`,
/// formatted like an [`EventId`](crate::EventId) (a CIDv1 with the `raw` codec and a blake3
/// multihash, in base32-lower multibase: `bafkr4i…`).
pub fn content_hash(bytes: &[u8]) -> String {
    format_cid(blake3::hash(bytes).as_bytes())
}

/// Whether `text` is a [`content_hash`] (a CIDv1 of a 32-byte blake3 digest).
pub(crate) fn is_content_hash(text: &str) -> bool {
    text.len() == content_hash(b"").len()
        && text.starts_with('b')
        && text[1..]
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
}

/// CIDv1 prefix: version 1, multicodec `raw` (0x55), multihash code blake3 (0x1e), length 32.
/// All four are single-byte varints.
pub(crate) const CID_PREFIX: [u8; 4] = [0x01, 0x55, 0x1e, 0x20];

/// Formats a blake3 digest as a CIDv1 string with the `b` (base32-lower) multibase prefix.
pub(crate) fn format_cid(digest: &[u8; 32]) -> String {
    let mut bytes = [0u8; 36];
    bytes[..4].copy_from_slice(&CID_PREFIX);
    bytes[4..].copy_from_slice(digest);
    let mut text = String::with_capacity(59);
    text.push('b');
    base32_lower_encode(&bytes, &mut text);
    text
}

/// Parses a string written by [`format_cid`] back to its digest.
pub(crate) fn parse_cid(input: &str) -> Result<[u8; 32], String> {
    let Some(body) = input.strip_prefix('b') else {
        return Err("expected the base32-lower multibase prefix `b`".to_string());
    };
    let bytes = base32_lower_decode(body)?;
    if bytes.len() != 36 {
        return Err(format!(
            "decodes to {} bytes, expected 36 (CIDv1 prefix + 32-byte blake3 digest)",
            bytes.len()
        ));
    }
    if bytes[..4] != CID_PREFIX {
        return Err(format!(
            "CID prefix is {}, expected {} (CIDv1, raw, blake3-256)",
            hex(&bytes[..4]),
            hex(&CID_PREFIX)
        ));
    }
    let mut digest = [0u8; 32];
    digest.copy_from_slice(&bytes[4..]);
    Ok(digest)
}

const BASE32_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// RFC 4648 base32, lower case, no padding (the multibase `b` alphabet).
fn base32_lower_encode(bytes: &[u8], out: &mut String) {
    let mut buffer: u32 = 0;
    let mut n_bits = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        n_bits += 8;
        while n_bits >= 5 {
            n_bits -= 5;
            out.push(BASE32_ALPHABET[((buffer >> n_bits) & 31) as usize] as char);
        }
    }
    if n_bits > 0 {
        out.push(BASE32_ALPHABET[((buffer << (5 - n_bits)) & 31) as usize] as char);
    }
}

/// Inverse of [`base32_lower_encode`]. Rejects upper case, padding, impossible lengths and
/// non-zero trailing bits, so each byte string has exactly one accepted spelling.
fn base32_lower_decode(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let mut buffer: u32 = 0;
    let mut n_bits = 0;
    for (char_idx, ch) in text.bytes().enumerate() {
        let value = match ch {
            b'a'..=b'z' => ch - b'a',
            b'2'..=b'7' => ch - b'2' + 26,
            _ => {
                return Err(format!(
                    "character {char_idx} is not in the base32-lower alphabet [a-z2-7]"
                ));
            }
        };
        buffer = (buffer << 5) | u32::from(value);
        n_bits += 5;
        if n_bits >= 8 {
            n_bits -= 8;
            out.push((buffer >> n_bits) as u8);
        }
        buffer &= (1 << n_bits) - 1;
    }
    // A valid unpadded length leaves fewer than 5 bits, all zero.
    if n_bits >= 5 || buffer != 0 {
        return Err("invalid base32 length or non-zero trailing bits".to_string());
    }
    Ok(out)
}

/// Lower-case hex of `bytes`, for messages.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Appends canonical encodings to a byte vector.
pub(crate) struct Writer {
    pub(crate) bytes: Vec<u8>,
}

impl Writer {
    pub(crate) fn with_capacity(capacity: usize) -> Writer {
        Writer {
            bytes: Vec::with_capacity(capacity),
        }
    }

    pub(crate) fn u8(&mut self, value: u8) {
        self.bytes.push(value);
    }

    pub(crate) fn u32(&mut self, value: u32) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    pub(crate) fn u64(&mut self, value: u64) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    /// Floats were checked finite when the event was built.
    pub(crate) fn f64(&mut self, value: f64) {
        self.u64(value.to_bits());
    }

    pub(crate) fn raw(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    /// Lengths were checked to fit `u32` (and [`crate::MAX_EVENT_BYTES`]) when the event was
    /// built.
    pub(crate) fn len(&mut self, len: usize) {
        self.u32(len as u32);
    }

    pub(crate) fn str(&mut self, value: &str) {
        self.len(value.len());
        self.raw(value.as_bytes());
    }

    pub(crate) fn option<T>(&mut self, value: Option<T>, mut write: impl FnMut(&mut Writer, T)) {
        match value {
            None => self.u8(0),
            Some(inner) => {
                self.u8(1);
                write(self, inner);
            }
        }
    }
}

/// Reads canonical encodings from a byte slice, failing with the field name and offset.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pub(crate) offset: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, offset: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.offset
    }

    pub(crate) fn error(&self, field: &'static str, reason: impl Into<String>) -> Error {
        Error::Decode {
            offset: self.offset,
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn take(&mut self, n_bytes: usize, field: &'static str) -> Result<&'a [u8], Error> {
        if n_bytes > self.remaining() {
            return Err(self.error(
                field,
                format!(
                    "needs {n_bytes} bytes, only {} remain (truncated input)",
                    self.remaining()
                ),
            ));
        }
        let slice = &self.bytes[self.offset..self.offset + n_bytes];
        self.offset += n_bytes;
        Ok(slice)
    }

    pub(crate) fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], Error> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, Error> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, Error> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, Error> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn f64(&mut self, field: &'static str) -> Result<f64, Error> {
        let start = self.offset;
        let value = f64::from_bits(self.u64(field)?);
        if !value.is_finite() {
            self.offset = start;
            return Err(self.error(field, format!("{value} is not a finite number")));
        }
        Ok(value)
    }

    /// A length or count, checked against the bytes left: each item needs at least
    /// `min_item_bytes`, so a forged count cannot make us allocate more than the input size.
    pub(crate) fn len(
        &mut self,
        field: &'static str,
        min_item_bytes: usize,
    ) -> Result<usize, Error> {
        let start = self.offset;
        let len = self.u32(field)? as usize;
        let n_available = self.remaining();
        if len.saturating_mul(min_item_bytes.max(1)) > n_available {
            self.offset = start;
            return Err(self.error(
                field,
                format!("length {len} exceeds the {n_available} bytes that remain"),
            ));
        }
        Ok(len)
    }

    pub(crate) fn str(&mut self, field: &'static str) -> Result<String, Error> {
        let len = self.len(field, 1)?;
        let start = self.offset;
        let bytes = self.take(len, field)?;
        match std::str::from_utf8(bytes) {
            Ok(text) => Ok(text.to_string()),
            Err(err) => {
                self.offset = start;
                Err(self.error(field, format!("invalid UTF-8: {err}")))
            }
        }
    }

    pub(crate) fn option<T>(
        &mut self,
        field: &'static str,
        mut read: impl FnMut(&mut Reader<'a>) -> Result<T, Error>,
    ) -> Result<Option<T>, Error> {
        match self.u8(field)? {
            0 => Ok(None),
            1 => Ok(Some(read(self)?)),
            tag => {
                self.offset -= 1;
                Err(self.error(field, format!("option tag {tag}, expected 0 or 1")))
            }
        }
    }

    pub(crate) fn vec<T>(
        &mut self,
        field: &'static str,
        min_item_bytes: usize,
        mut read: impl FnMut(&mut Reader<'a>) -> Result<T, Error>,
    ) -> Result<Vec<T>, Error> {
        let n_items = self.len(field, min_item_bytes)?;
        // Never reserve from an untrusted count: an item can take far more memory decoded
        // than its minimum encoded size.
        let mut items = Vec::with_capacity(n_items.min(PREALLOCATE_AT_MOST));
        for _ in 0..n_items {
            items.push(read(self)?);
        }
        Ok(items)
    }

    pub(crate) fn finish(&self, field: &'static str) -> Result<(), Error> {
        if self.remaining() != 0 {
            return Err(self.error(
                field,
                format!("{} unexpected trailing bytes", self.remaining()),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_round_trips_every_length() {
        for len in 0..40usize {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let mut text = String::new();
            base32_lower_encode(&bytes, &mut text);
            assert_eq!(base32_lower_decode(&text).unwrap(), bytes, "len {len}");
        }
    }

    #[test]
    fn base32_matches_rfc4648_vectors() {
        // RFC 4648 section 10, lower-cased, without padding.
        let cases = [
            ("", ""),
            ("f", "my"),
            ("fo", "mzxq"),
            ("foo", "mzxw6"),
            ("foob", "mzxw6yq"),
            ("fooba", "mzxw6ytb"),
            ("foobar", "mzxw6ytboi"),
        ];
        for (plain, encoded) in cases {
            let mut text = String::new();
            base32_lower_encode(plain.as_bytes(), &mut text);
            assert_eq!(text, encoded);
        }
    }

    #[test]
    fn base32_rejects_non_canonical_spellings() {
        assert!(base32_lower_decode("mz").is_err(), "non-zero trailing bits");
        assert!(base32_lower_decode("MY").is_err(), "upper case");
        assert!(base32_lower_decode("my==").is_err(), "padding");
        assert!(base32_lower_decode("m").is_err(), "impossible length");
    }

    #[test]
    fn content_hash_is_a_blake3_cid() {
        let hash = content_hash(b"hello");
        assert!(hash.starts_with("bafkr4i"), "{hash}");
        assert_eq!(hash.len(), 59);
        assert_eq!(
            &parse_cid(&hash).unwrap(),
            blake3::hash(b"hello").as_bytes()
        );
    }
}
