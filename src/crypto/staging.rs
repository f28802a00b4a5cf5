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
    /// One key per 2^32 block writes (the generations its IVs can tell apart); earlier keys
    /// stay to open the blocks sealed under them.
    keys: Vec<ObjectKeys>,
    next_generation: u64,
}

impl Default for StagingCipher {
    fn default() -> Self {
        Self::new()
    }
}

/// Block writes under one key: the IV holds the low 32 bits of the generation.
const WRITES_PER_KEY: u64 = 1 << 32;

fn fresh_keys() -> ObjectKeys {
    ObjectKeys::derive_labeled(&MasterKey::generate(), &[], INFO)
}

impl StagingCipher {
    /// A cipher under a fresh random key, never written anywhere.
    pub fn new() -> Self {
        Self::starting_at(0)
    }

    fn starting_at(next_generation: u64) -> Self {
        let mut cipher = Self {
            keys: Vec::new(),
            next_generation,
        };
        cipher.keys_for_next();
        cipher
    }

    /// Makes sure the key of the next generation exists (a new one every 2^32 writes, 256 TiB
    /// written through one staging file).
    fn keys_for_next(&mut self) {
        let needed = (self.next_generation / WRITES_PER_KEY) as usize + 1;
        while self.keys.len() < needed {
            self.keys.push(fresh_keys());
        }
    }

    /// Encrypts `block` in place as block `index`, under a generation never used before.
    pub fn seal(&mut self, index: u64, block: &mut [u8]) -> SealedBlock {
        self.keys_for_next();
        let generation = self.next_generation;
        self.next_generation += 1;
        let keys = &self.keys[(generation / WRITES_PER_KEY) as usize];
        let iv = iv(index, generation);
        keys.apply_keystream(&iv, block);
        SealedBlock {
            generation,
            tag: keys.tag(&iv, block),
        }
    }

    /// Verifies and decrypts `block` in place; false (and `block` untouched) when it is not
    /// what was sealed as block `index`.
    #[must_use]
    pub fn open(&self, index: u64, sealed: &SealedBlock, block: &mut [u8]) -> bool {
        let Some(keys) = self.keys.get((sealed.generation / WRITES_PER_KEY) as usize) else {
            return false;
        };
        let iv = iv(index, sealed.generation);
        if !keys.verify(&iv, block, &sealed.tag) {
            return false;
        }
        keys.apply_keystream(&iv, block);
        true
    }
}

/// Block index (8 bytes) ‖ write generation (low 4 bytes) ‖ CTR counter (4 bytes, from 0).
/// A 64 KiB block is 4096 AES blocks, well within the counter; the generation's high bits
/// choose the key, so no (key, IV) pair is used twice.
fn iv(index: u64, generation: u64) -> [u8; 16] {
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

    #[test]
    fn the_key_rolls_before_the_generation_wraps() {
        // As after 2^32 - 1 writes: the next write is the last under the first key.
        let mut cipher = StagingCipher::starting_at(WRITES_PER_KEY - 1);
        let plain = vec![9u8; 64];
        let (mut last, mut first) = (plain.clone(), plain.clone());
        let sealed_last = cipher.seal(0, &mut last);
        let sealed_first = cipher.seal(0, &mut first);
        assert_eq!(
            cipher.keys.len(),
            2,
            "a second key for the next 2^32 writes"
        );
        assert_ne!(last, first, "the same IV under two keys: two keystreams");
        assert!(cipher.open(0, &sealed_last, &mut last));
        assert!(cipher.open(0, &sealed_first, &mut first));
        assert_eq!((last, first), (plain.clone(), plain));
    }
}
