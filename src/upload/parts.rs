//! Part sizes: whole ciphertext segments, growing with the part number so that a file can
//! reach 5 TiB within S3's 10,000 parts while small and medium files use small parts.
//!
//! The size of the first tier is the mount's `--part-size`; it only decides how a new
//! object is cut into requests (readers and appends never depend on it), so it may differ
//! between mounts and over time.

use crate::crypto::Layout;

/// S3's smallest part (every part but the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// The largest `--part-size`: each file being written holds up to `--parts-in-flight` of
/// them in memory.
pub const MAX_PART_SIZE: u64 = 512 * 1024 * 1024;
/// The default first-tier part size.
pub const DEFAULT_PART_SIZE: u64 = 8 * 1024 * 1024;

/// Plaintext bytes per part after the first tier: (last part number of the tier, bytes).
/// With the smallest first tier, 1000 × 5 MiB + 1000 × 64 MiB + 8000 × 672 MiB ≈ 5.2 TiB,
/// past S3's 5 TiB object limit.
const FIRST_TIER_PARTS: u32 = 1000;
const LATER_TIERS: [(u32, u64); 2] = [(2000, 64 * 1024 * 1024), (u32::MAX, 672 * 1024 * 1024)];

/// Ciphertext size of part `part_number` (1-based) when the first 1000 parts hold
/// `first_tier` plaintext bytes each: a whole number of ciphertext segments close to the
/// tier's size, so parts always hold whole segments. Later tiers are never smaller than the
/// first.
pub fn part_size(part_number: u32, layout: Layout, first_tier: u64) -> usize {
    let target = if part_number <= FIRST_TIER_PARTS {
        first_tier
    } else {
        LATER_TIERS
            .iter()
            .find(|(last, _)| part_number <= *last)
            .map_or(LATER_TIERS[1].1, |t| t.1)
            .max(first_tier)
    };
    let segment = layout.ciphertext_segment_size();
    let segments = (target / layout.plaintext_segment_size() as u64).max(1);
    (segments * segment) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_hold_whole_segments_and_reach_5_tib() {
        let layout = Layout::default();
        let c = layout.ciphertext_segment_size() as usize;
        let default = DEFAULT_PART_SIZE;
        assert_eq!(part_size(1, layout, default), 128 * c);
        assert_eq!(part_size(1000, layout, default), 128 * c);
        assert_eq!(part_size(1001, layout, default), 1024 * c);
        assert_eq!(part_size(2001, layout, default), 10752 * c);
        for first in [MIN_PART_SIZE, default, 6 << 20, MAX_PART_SIZE] {
            let total: u64 = (1..=10_000)
                .map(|n| part_size(n, layout, first) as u64)
                .sum();
            assert!(total >= 5 << 40, "{first}: {total}");
            // Every part but the last must be at least S3's 5 MiB minimum.
            assert!(part_size(1, layout, first) as u64 >= MIN_PART_SIZE);
        }
        assert_eq!(part_size(1, layout, 6 << 20), 96 * c);
        // A first tier larger than the second keeps the later parts at least as large.
        assert_eq!(part_size(1001, layout, MAX_PART_SIZE), 8192 * c);
        let small = Layout::new(4096).unwrap();
        assert_eq!(
            part_size(1, small, default) % small.ciphertext_segment_size() as usize,
            0
        );
    }
}
