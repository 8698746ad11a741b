//! All-reduce algorithms over a [`Comm`]: ring (reduce-scatter then all-gather, each chunk
//! cut into pieces that flow as soon as they are merged: bandwidth-optimal, for large
//! tensors), recursive doubling (log2(n) full exchanges, with a fold-in step for group
//! sizes that are not powers of two: latency-optimal, for small tensors), and hierarchical
//! (reduce to one leader per host, all-reduce among leaders, send back inside the host).
//!
//! Invariants: each algorithm leaves every member with bitwise the same buffer, the merge
//! of all members' inputs; a member's buffer is only read by the algorithm's own sends
//! (which copy it, or pass received pieces on), so callers may reuse it afterwards. Chunks
//! and pieces are computed from the length alone, so every member cuts them alike, uneven
//! sizes and empty chunks included.

use std::collections::VecDeque;

use rill_graph::{Result, Tensor};

use super::comm::{Comm, Incoming};
use super::elements::{MergeOp, Wire};

/// At most this many bytes per ring piece.
const PIECE_BYTES: usize = 1 << 20;
/// Tensors up to this many bytes use recursive doubling when the algorithm is `auto`.
pub(crate) const SMALL_BYTES: usize = 64 << 10;

/// Which all-reduce algorithm runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    Ring,
    /// Recursive doubling (TensorFlow's hint `tree` is the latency-bound choice).
    Tree,
    Hierarchical,
}

impl Algorithm {
    /// The algorithm `hint` names, or the automatic choice for `bytes` over `hosts`
    /// (hierarchical when ranks share hosts and there is more than one host, recursive
    /// doubling for small tensors, ring otherwise).
    pub(crate) fn choose(hint: &str, bytes: usize, hosts: &[i64]) -> Algorithm {
        match hint {
            "ring" => Algorithm::Ring,
            "tree" => Algorithm::Tree,
            "hierarchical" => Algorithm::Hierarchical,
            _ => {
                let distinct = distinct_hosts(hosts);
                if distinct > 1 && distinct < hosts.len() {
                    Algorithm::Hierarchical
                } else {
                    flat(bytes)
                }
            }
        }
    }
}

fn flat(bytes: usize) -> Algorithm {
    if bytes <= SMALL_BYTES {
        Algorithm::Tree
    } else {
        Algorithm::Ring
    }
}

fn distinct_hosts(hosts: &[i64]) -> usize {
    let mut h = hosts.to_vec();
    h.sort_unstable();
    h.dedup();
    h.len()
}

/// Runs `algorithm`; `hosts` gives each rank's host (for hierarchical).
pub(crate) fn all_reduce<T: Wire>(
    algorithm: Algorithm,
    comm: &Comm,
    buf: &mut [T],
    op: MergeOp,
    hosts: &[i64],
) -> Result<()> {
    match algorithm {
        Algorithm::Ring => ring(comm, buf, op),
        Algorithm::Tree => recursive_doubling(comm, buf, op),
        Algorithm::Hierarchical => hierarchical(comm, buf, op, hosts),
    }
}

/// Element range of chunk `c` of `len` split `n` ways (sizes differ by at most one).
fn chunk(len: usize, n: usize, c: usize) -> (usize, usize) {
    (len * c / n, len * (c + 1) / n)
}

/// The pieces of element range `(lo, hi)`, each at most `per` elements.
fn pieces((lo, hi): (usize, usize), per: usize) -> Vec<(usize, usize)> {
    (lo..hi)
        .step_by(per)
        .map(|a| (a, (a + per).min(hi)))
        .collect()
}

/// Ring all-reduce: n-1 reduce-scatter steps (at step s, rank r sends chunk r-s to r+1 and
/// merges chunk r-s-1 from r-1), after which rank r holds chunk r+1 fully merged; then n-1
/// all-gather steps pass the merged chunks around. Every receive is posted up front, and a
/// piece is forwarded as soon as it is merged, so transfers pipeline.
pub(crate) fn ring<T: Wire>(comm: &Comm, buf: &mut [T], op: MergeOp) -> Result<()> {
    let n = comm.size();
    if n == 1 {
        return Ok(());
    }
    let (r, len) = (comm.rank, buf.len());
    let per = (PIECE_BYTES / std::mem::size_of::<T>()).max(1);
    let (next, prev) = ((r + 1) % n, (r + n - 1) % n);
    let cut = |c: usize| pieces(chunk(len, n, c % n), per);
    let rs_recv = |s: usize| r + 2 * n - s - 1;
    let ag_recv = |s: usize| r + n - s;
    let mut incoming: VecDeque<Incoming> = VecDeque::new();
    for s in 0..n - 1 {
        for p in 0..cut(rs_recv(s)).len() {
            incoming.push_back(comm.post(prev, &format!("rs{s}.{p}")));
        }
    }
    for s in 0..n - 1 {
        for p in 0..cut(ag_recv(s)).len() {
            incoming.push_back(comm.post(prev, &format!("ag{s}.{p}")));
        }
    }
    for (p, (lo, hi)) in cut(r).into_iter().enumerate() {
        comm.send(next, &format!("rs0.{p}"), buf[lo..hi].to_vec())?;
    }
    for s in 0..n - 1 {
        for (p, (lo, hi)) in cut(rs_recv(s)).into_iter().enumerate() {
            // Merged into the received piece (merges commute), which travels on: to the
            // next reduce-scatter step, or (fully merged, and kept) to the all-gather.
            let mut got = comm.wait_values::<T>(next_incoming(&mut incoming), hi - lo)?;
            let merged = got.as_mut_slice::<T>()?;
            T::merge(op, merged, &buf[lo..hi]);
            let tag = if s + 1 < n - 1 {
                format!("rs{}.{p}", s + 1)
            } else {
                buf[lo..hi].copy_from_slice(merged);
                format!("ag0.{p}")
            };
            comm.send_tensor(next, &tag, got)?;
        }
    }
    for s in 0..n - 1 {
        for (p, (lo, hi)) in cut(ag_recv(s)).into_iter().enumerate() {
            let got = comm.wait_values::<T>(next_incoming(&mut incoming), hi - lo)?;
            buf[lo..hi].copy_from_slice(got.as_slice::<T>()?);
            if s + 1 < n - 1 {
                comm.send_tensor(next, &format!("ag{}.{p}", s + 1), got)?;
            }
        }
    }
    Ok(())
}

fn next_incoming(incoming: &mut VecDeque<Incoming>) -> Incoming {
    incoming
        .pop_front()
        .expect("one receive is posted per piece the algorithm waits for")
}

/// Recursive doubling: with p the largest power of two <= n, ranks p.. first fold their
/// value into rank r-p; ranks 0..p exchange whole buffers with `r ^ mask` for each mask,
/// merging the lower rank's value first; then the folded ranks get the result back.
pub(crate) fn recursive_doubling<T: Wire>(comm: &Comm, buf: &mut [T], op: MergeOp) -> Result<()> {
    let n = comm.size();
    if n == 1 {
        return Ok(());
    }
    let (r, len) = (comm.rank, buf.len());
    let p = 1usize << (usize::BITS - 1 - n.leading_zeros());
    let extra = n - p;
    if r >= p {
        let back = comm.post(r - p, "rd.out");
        comm.send(r - p, "rd.in", buf.to_vec())?;
        let got = comm.wait_values::<T>(back, len)?;
        buf.copy_from_slice(got.as_slice::<T>()?);
        return Ok(());
    }
    if r < extra {
        let got = comm.wait_values::<T>(comm.post(r + p, "rd.in"), len)?;
        T::merge(op, buf, got.as_slice::<T>()?);
    }
    let mut mask = 1;
    while mask < p {
        let partner = r ^ mask;
        let tag = format!("rd{mask}");
        let incoming = comm.post(partner, &tag);
        comm.send(partner, &tag, buf.to_vec())?;
        let mut got = comm.wait_values::<T>(incoming, len)?;
        if r < partner {
            T::merge(op, buf, got.as_slice::<T>()?);
        } else {
            let merged = got.as_mut_slice::<T>()?;
            T::merge(op, merged, buf);
            buf.copy_from_slice(merged);
        }
        mask <<= 1;
    }
    if r < extra {
        comm.send(r + p, "rd.out", buf.to_vec())?;
    }
    Ok(())
}

/// Hierarchical: every host's ranks send to its first rank (the leader), which merges them
/// in rank order; leaders all-reduce among themselves (recursive doubling when small, ring
/// otherwise); each leader sends the result back to its host's ranks.
pub(crate) fn hierarchical<T: Wire>(
    comm: &Comm,
    buf: &mut [T],
    op: MergeOp,
    hosts: &[i64],
) -> Result<()> {
    let (r, len) = (comm.rank, buf.len());
    let mut order: Vec<i64> = Vec::new();
    for &h in hosts {
        if !order.contains(&h) {
            order.push(h);
        }
    }
    let members = |h: i64| (0..hosts.len()).filter(move |&m| hosts[m] == h);
    let local: Vec<usize> = members(hosts[r]).collect();
    let leader = local[0];
    if r != leader {
        let back = comm.post(leader, "h.down");
        comm.send(leader, "h.up", buf.to_vec())?;
        let got = comm.wait_values::<T>(back, len)?;
        buf.copy_from_slice(got.as_slice::<T>()?);
        return Ok(());
    }
    let ups: Vec<Incoming> = local[1..].iter().map(|&m| comm.post(m, "h.up")).collect();
    for up in ups {
        let got = comm.wait_values::<T>(up, len)?;
        T::merge(op, buf, got.as_slice::<T>()?);
    }
    let leaders: Vec<usize> = order
        .iter()
        .map(|&h| members(h).next().unwrap_or(0))
        .collect();
    let across = comm.subgroup(&leaders, "h.x")?;
    match flat(std::mem::size_of_val(buf)) {
        Algorithm::Ring => ring(&across, buf, op)?,
        _ => recursive_doubling(&across, buf, op)?,
    }
    if local.len() > 1 {
        let result = Tensor::new(&[len], buf.to_vec())?;
        for &m in &local[1..] {
            comm.send_tensor(m, "h.down", result.clone())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_and_pieces_cover_the_buffer_once() {
        for (len, n) in [(0, 3), (1, 4), (10, 3), (1000, 7)] {
            let mut covered = vec![0u8; len];
            for c in 0..n {
                for (lo, hi) in pieces(chunk(len, n, c), 3) {
                    assert!(hi - lo <= 3 && lo < hi);
                    covered[lo..hi].iter_mut().for_each(|x| *x += 1);
                }
            }
            assert!(covered.iter().all(|&x| x == 1), "len {len} n {n}");
        }
    }

    #[test]
    fn automatic_choice() {
        assert_eq!(
            Algorithm::choose("auto", 1 << 10, &[0, 1, 2]),
            Algorithm::Tree
        );
        assert_eq!(
            Algorithm::choose("auto", 1 << 24, &[0, 1, 2]),
            Algorithm::Ring
        );
        assert_eq!(
            Algorithm::choose("auto", 1 << 24, &[0, 0, 1, 1]),
            Algorithm::Hierarchical
        );
        assert_eq!(Algorithm::choose("ring", 4, &[0, 0]), Algorithm::Ring);
    }
}
