//! Part sizes: whole ciphertext segments, growing with the part number so that a file can
//! reach 5 TiB within S3's 10,000 parts while small and medium files use small parts.

use crate::crypto::Layout;

/// Plaintext bytes per part in each tier: (last part number of the tier, bytes).
/// 1000 × 8 MiB + 1000 × 64 MiB + 8000 × 672 MiB ≈ 5.2 TiB, past S3's 5 TiB object limit.
const TIERS: [(u32, u64); 3] = [
    (1000, 8 * 1024 * 1024),
    (2000, 64 * 1024 * 1024),
    (u32::MAX, 672 * 1024 * 1024),
];

/// Ciphertext size of part `part_number` (1-based): a whole number of ciphertext segments
/// close to the tier's size, so parts always hold whole segments.
pub fn part_size(part_number: u32, layout: Layout) -> usize {
    let target = TIERS
        .iter()
        .find(|(last, _)| part_number <= *last)
        .map_or(TIERS[2].1, |t| t.1);
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
        assert_eq!(part_size(1, layout), 128 * c);
        assert_eq!(part_size(1000, layout), 128 * c);
        assert_eq!(part_size(1001, layout), 1024 * c);
        assert_eq!(part_size(2001, layout), 10752 * c);
        let total: u64 = (1..=10_000).map(|n| part_size(n, layout) as u64).sum();
        assert!(total >= 5 << 40, "{total}");
        // Every part but the last must be at least S3's 5 MiB minimum.
        assert!(part_size(1, layout) >= 5 << 20);
        let small = Layout::new(4096).unwrap();
        assert_eq!(
            part_size(1, small) % small.ciphertext_segment_size() as usize,
            0
        );
    }
}
