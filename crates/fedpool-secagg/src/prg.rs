//! The mask PRG: the ChaCha20 keystream (RFC 8439, 256-bit key = the mask seed, fixed 96-bit
//! nonce per session and purpose) read as little-endian `u32` words and added to, or subtracted
//! from, an accumulator with wrapping arithmetic.
//!
//! This is the hot path of the whole protocol: a client expands one seed per neighbour plus its
//! self-mask seed over the full vector, and the server re-expands the self masks of survivors and
//! the pairwise masks of dropouts. The keystream is generated straight into a stack buffer of
//! the backend's parallel block width (4 blocks with AVX2) and folded into the accumulator, with
//! no allocation per seed. Arithmetic is mod 2^32; since 2^b divides 2^32, reducing the final
//! words mod 2^b gives the sum mod 2^b, so masks are never reduced one by one.

use chacha20::cipher::consts::U64;
use chacha20::cipher::typenum::Unsigned;
use chacha20::cipher::{
    Block, BlockSizeUser, ParBlocks, ParBlocksSizeUser, StreamCipherBackend, StreamCipherClosure,
    StreamCipherCore,
};
use chacha20::variants::Ietf;
use chacha20::{ChaChaCore, KeyIvInit, R20};

/// What a mask is for; each purpose has its own nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MaskPurpose {
    /// PRG(b_u), the self mask.
    SelfMask,
    /// PRG(s_uv), a pairwise mask.
    Pairwise,
}

/// The fixed nonces of one session.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MaskNonces {
    self_mask: [u8; 12],
    pairwise: [u8; 12],
}

impl MaskNonces {
    pub(crate) fn new(binding: &[u8; 32]) -> MaskNonces {
        let derive = |label: &str| {
            let full = blake3::derive_key(label, binding);
            let mut nonce = [0u8; 12];
            nonce.copy_from_slice(&full[..12]);
            nonce
        };
        MaskNonces {
            self_mask: derive("fedpool-secagg v1 self-mask nonce"),
            pairwise: derive("fedpool-secagg v1 pairwise-mask nonce"),
        }
    }

    fn get(&self, purpose: MaskPurpose) -> &[u8; 12] {
        match purpose {
            MaskPurpose::SelfMask => &self.self_mask,
            MaskPurpose::Pairwise => &self.pairwise,
        }
    }
}

/// `acc[i] += PRG(seed)[i]` (wrapping), for every word of `acc`.
pub(crate) fn add_mask(
    acc: &mut [u32],
    seed: &[u8; 32],
    nonces: &MaskNonces,
    purpose: MaskPurpose,
) {
    core(seed, nonces.get(purpose)).process_with_backend(FoldKeystream::<false> { acc });
}

/// `acc[i] -= PRG(seed)[i]` (wrapping), for every word of `acc`.
pub(crate) fn subtract_mask(
    acc: &mut [u32],
    seed: &[u8; 32],
    nonces: &MaskNonces,
    purpose: MaskPurpose,
) {
    core(seed, nonces.get(purpose)).process_with_backend(FoldKeystream::<true> { acc });
}

fn core(seed: &[u8; 32], nonce: &[u8; 12]) -> ChaChaCore<R20, Ietf> {
    // The IETF variant's 32-bit block counter covers 2^32 blocks = 2^36 words; the config caps
    // vectors at 2^32 − 1 words, so the counter never wraps.
    ChaChaCore::<R20, Ietf>::new(&(*seed).into(), &(*nonce).into())
}

/// A rank-2 closure the ChaCha20 core calls with its fastest backend (AVX2, SSE2 or portable).
struct FoldKeystream<'a, const SUBTRACT: bool> {
    acc: &'a mut [u32],
}

impl<const SUBTRACT: bool> BlockSizeUser for FoldKeystream<'_, SUBTRACT> {
    type BlockSize = U64;
}

impl<const SUBTRACT: bool> StreamCipherClosure for FoldKeystream<'_, SUBTRACT> {
    // Inlined into the backend's `#[target_feature(enable = "avx2")]` entry point, so the
    // backend's per-batch intrinsics and our folding loop are compiled with AVX2 too; out of
    // line, every `_mm256_*` helper became a function call (measured: 5% of a round).
    #[inline(always)]
    fn call<B: StreamCipherBackend<BlockSize = U64>>(self, backend: &mut B) {
        const WORDS_PER_BLOCK: usize = 16;
        let words_per_batch = <B as ParBlocksSizeUser>::ParBlocksSize::USIZE * WORDS_PER_BLOCK;
        let mut batch = ParBlocks::<B>::default();
        let mut chunks = self.acc.chunks_exact_mut(words_per_batch);
        for chunk in &mut chunks {
            backend.gen_par_ks_blocks(&mut batch);
            for (words, block) in chunk.chunks_exact_mut(WORDS_PER_BLOCK).zip(batch.iter()) {
                fold_block::<SUBTRACT>(words, block);
            }
        }
        let mut block = Block::<B>::default();
        for words in chunks.into_remainder().chunks_mut(WORDS_PER_BLOCK) {
            backend.gen_ks_block(&mut block);
            fold_block::<SUBTRACT>(words, &block);
        }
    }
}

#[inline(always)]
fn fold_block<const SUBTRACT: bool>(words: &mut [u32], block: &[u8]) {
    for (word, bytes) in words.iter_mut().zip(block.chunks_exact(4)) {
        let key = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        *word = if SUBTRACT {
            word.wrapping_sub(key)
        } else {
            word.wrapping_add(key)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chacha20::ChaCha20;
    use chacha20::cipher::StreamCipher;

    /// The reference: the `ChaCha20` stream cipher's keystream, read as LE words.
    fn reference_words(seed: &[u8; 32], nonce: &[u8; 12], len: usize) -> Vec<u32> {
        let mut bytes = vec![0u8; len * 4];
        let mut cipher = ChaCha20::new(&(*seed).into(), &(*nonce).into());
        cipher.apply_keystream(&mut bytes);
        bytes
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn folding_matches_the_reference_keystream_at_every_length() {
        let nonces = MaskNonces::new(&[3; 32]);
        let seed = [7u8; 32];
        for len in [0, 1, 15, 16, 17, 63, 64, 65, 255, 256, 1000, 4099] {
            let reference = reference_words(&seed, nonces.get(MaskPurpose::Pairwise), len);
            let mut acc = vec![0u32; len];
            add_mask(&mut acc, &seed, &nonces, MaskPurpose::Pairwise);
            assert_eq!(acc, reference, "length {len}");
            subtract_mask(&mut acc, &seed, &nonces, MaskPurpose::Pairwise);
            assert!(acc.iter().all(|&w| w == 0), "length {len}");
        }
    }

    #[test]
    fn purposes_have_different_streams() {
        let nonces = MaskNonces::new(&[3; 32]);
        let mut a = vec![0u32; 16];
        let mut b = vec![0u32; 16];
        add_mask(&mut a, &[1; 32], &nonces, MaskPurpose::SelfMask);
        add_mask(&mut b, &[1; 32], &nonces, MaskPurpose::Pairwise);
        assert_ne!(a, b);
    }
}
