//! The cipher of local staging files (files changed in place are staged on local disk,
//! encrypted): AES-256-CTR and HMAC-SHA256 per 64 KiB block, under a random key per staging
//! file that lives only in memory (through HKDF with its own label).
//!
//! The IV of a block write is its block index and a per-file write generation that only
//! increases, so no (key, IV) pair ever encrypts two different plaintexts; the tags stay in
//! memory, so a block changed on disk behind our back fails to open instead of reading as
//! wrong bytes.

use super::MasterKey;
use super::keys::ObjectKeys;

const INFO: &[u8] = b"s3cryptfs v1 local staging";

/// What must be kept (in memory) to open a sealed block again.
#[derive(Clone, Copy, Debug)]
pub struct SealedBlock {
    generation: u64,
    tag: [u8; 32],
}

/// The cipher of one staging file.
pub struct StagingCipher {
    keys: ObjectKeys,
    next_generation: u64,
}

impl Default for StagingCipher {
    fn default() -> Self {
        Self::new()
    }
}

impl StagingCipher {
    /// A cipher under a fresh random key, never written anywhere.
    pub fn new() -> Self {
        let key = MasterKey::generate();
        Self {
            keys: ObjectKeys::derive_labeled(&key, &[], INFO),
            next_generation: 0,
        }
    }

    /// Encrypts `block` in place as block `index`, under a generation never used before.
    pub fn seal(&mut self, index: u64, block: &mut [u8]) -> SealedBlock {
        let generation = self.next_generation;
        self.next_generation += 1;
        let iv = iv(index, generation);
        self.keys.apply_keystream(&iv, block);
        SealedBlock {
            generation,
            tag: self.keys.tag(&iv, block),
        }
    }

    /// Verifies and decrypts `block` in place; false (and `block` untouched) when it is not
    /// what was sealed as block `index`.
    #[must_use]
    pub fn open(&self, index: u64, sealed: &SealedBlock, block: &mut [u8]) -> bool {
        let iv = iv(index, sealed.generation);
        if !self.keys.verify(&iv, block, &sealed.tag) {
            return false;
        }
        self.keys.apply_keystream(&iv, block);
        true
    }
}

/// Block index (8 bytes) ‖ write generation (low 4 bytes) ‖ CTR counter (4 bytes, from 0).
/// A 64 KiB block is 4096 AES blocks, well within the counter. The generation would wrap
/// after 2^32 block writes (256 TiB through one staging file): an assert stops before.
fn iv(index: u64, generation: u64) -> [u8; 16] {
    assert!(generation < 1 << 32, "staging generation would wrap");
    let mut iv = [0u8; 16];
    iv[..8].copy_from_slice(&index.to_be_bytes());
    iv[8..12].copy_from_slice(&(generation as u32).to_be_bytes());
    iv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_blocks_open_only_as_sealed() {
        let mut cipher = StagingCipher::new();
        let plain = vec![5u8; 4096];
        let mut block = plain.clone();
        let sealed = cipher.seal(3, &mut block);
        assert_ne!(block, plain);
        let mut moved = block.clone();
        assert!(
            !cipher.open(4, &sealed, &mut moved),
            "opened as another block"
        );
        let mut flipped = block.clone();
        flipped[10] ^= 1;
        assert!(
            !cipher.open(3, &sealed, &mut flipped),
            "opened a changed block"
        );
        assert!(cipher.open(3, &sealed, &mut block));
        assert_eq!(block, plain);
    }

    #[test]
    fn resealing_never_reuses_a_keystream() {
        let mut cipher = StagingCipher::new();
        let (mut a, mut b) = (vec![0u8; 64], vec![0u8; 64]);
        cipher.seal(0, &mut a);
        cipher.seal(0, &mut b);
        assert_ne!(a, b, "the same block sealed twice must use two keystreams");
    }
}
