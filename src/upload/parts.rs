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
///
/// Each file being written holds up to `--parts-in-flight` parts in memory, so parts grow
/// in small steps and only as far as the file needs: with the default first tier a 10 GiB
/// file ends in 16 MiB parts, 15 GiB in 32 MiB, and files up to about 113 GiB never need
/// more than 64 MiB, so three of them fit the default `--max-upload-memory`. Only the last
/// tier is large, because the parts must reach S3's 5 TiB object limit within its 10,000
/// parts: with the smallest first tier, 1000 × 5 + 250 × 16 + 250 × 32 + 1500 × 64 MiB
/// + 7000 × 736 MiB ≈ 5.02 TiB.
const FIRST_TIER_PARTS: u32 = 1000;
const MIB: u64 = 1024 * 1024;
const LATER_TIERS: [(u32, u64); 4] = [
    (1250, 16 * MIB),
    (1500, 32 * MIB),
    (3000, 64 * MIB),
    (u32::MAX, 736 * MIB),
];

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
            .expect("the last tier ends at u32::MAX")
            .1
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
        assert_eq!(part_size(1001, layout, default), 256 * c);
        assert_eq!(part_size(1251, layout, default), 512 * c);
        assert_eq!(part_size(1501, layout, default), 1024 * c);
        assert_eq!(part_size(3000, layout, default), 1024 * c);
        assert_eq!(part_size(3001, layout, default), 11776 * c);
        // With the defaults a 100 GiB file never needs a part past 64 MiB (plaintext).
        let up_to_64_mib: u64 = (1..=10_000)
            .map(|n| part_size(n, layout, default))
            .take_while(|&size| size <= 1024 * c)
            .map(|size| (size / c) as u64 * u64::from(layout.plaintext_segment_size()))
            .sum();
        assert!(up_to_64_mib >= 100 << 30, "{up_to_64_mib}");
        for first in [MIN_PART_SIZE, default, 6 << 20, MAX_PART_SIZE] {
            let total: u64 = (1..=10_000)
                .map(|n| part_size(n, layout, first) as u64)
                .sum();
            assert!(total >= 5 << 40, "{first}: {total}");
            // Parts never shrink (a later part smaller than an earlier one would only add
            // requests), and none passes S3's 5 GiB part limit.
            for n in 1..10_000 {
                assert!(part_size(n + 1, layout, first) >= part_size(n, layout, first));
            }
            assert!(part_size(10_000, layout, first) as u64 <= 5 << 30);
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
