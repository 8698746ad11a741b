//! Offsets for planned buffers: greedy by size (the TFLite arena planner's idea). Buffers
//! are placed largest first; each goes into the smallest gap, between buffers already
//! placed whose lifetimes overlap its own, that fits it, or after the last of them.
//!
//! Invariant: two buffers whose lifetimes ([first, last] schedule positions) overlap get
//! disjoint byte ranges; every offset is a multiple of the arena alignment.

use super::{aligned, TensorLife};

/// Where each buffer went and how big the arena must be.
pub(crate) struct Placed {
    pub offsets: Vec<usize>,
    pub peak: usize,
}

pub(crate) fn greedy_by_size(buffers: &[TensorLife]) -> Placed {
    let mut order: Vec<usize> = (0..buffers.len()).collect();
    order.sort_by_key(|&b| {
        (
            std::cmp::Reverse(aligned(buffers[b].bytes)),
            buffers[b].first,
        )
    });
    let mut offsets = vec![0usize; buffers.len()];
    let mut placed: Vec<usize> = vec![];
    let mut peak = 0;
    for &b in &order {
        let size = aligned(buffers[b].bytes);
        let mut busy: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&p| {
                buffers[p].first <= buffers[b].last && buffers[b].first <= buffers[p].last
            })
            .map(|&p| (offsets[p], offsets[p] + aligned(buffers[p].bytes)))
            .collect();
        busy.sort_unstable();
        let mut best: Option<(usize, usize)> = None; // (gap, offset)
        let mut end = 0;
        for &(start, stop) in &busy {
            if start >= end && start - end >= size && best.is_none_or(|(g, _)| start - end < g) {
                best = Some((start - end, end));
            }
            end = end.max(stop);
        }
        let offset = best.map_or(end, |(_, o)| o);
        offsets[b] = offset;
        peak = peak.max(offset + size);
        placed.push(b);
    }
    Placed { offsets, peak }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn life(bytes: usize, first: usize, last: usize) -> TensorLife {
        TensorLife {
            name: String::new(),
            bytes,
            naive_bytes: bytes,
            first,
            last,
            offset: 0,
            members: vec![],
            touched_by: vec![],
        }
    }

    #[test]
    fn overlapping_lifetimes_get_disjoint_ranges_and_dead_ranges_are_reused() {
        let b = vec![
            life(640, 0, 1),
            life(640, 1, 2),
            life(640, 2, 3),
            life(128, 0, 3),
        ];
        let p = greedy_by_size(&b);
        for i in 0..b.len() {
            for j in 0..i {
                let live = b[i].first <= b[j].last && b[j].first <= b[i].last;
                let apart = p.offsets[i] + aligned(b[i].bytes) <= p.offsets[j]
                    || p.offsets[j] + aligned(b[j].bytes) <= p.offsets[i];
                assert!(!live || apart, "{i} and {j} overlap");
            }
        }
        // Buffers 0 and 2 do not overlap in time, so one range serves both.
        assert_eq!(p.peak, 640 * 2 + 128);
    }
}
