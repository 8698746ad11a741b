//! How CPU kernels split work across cores: [`for_rows`] hands disjoint runs of whole rows
//! of an output buffer to rayon tasks once the work is large enough to pay for them.
//!
//! Invariant: the callback sees every row exactly once, with the index of its first row, so
//! results never depend on how the work was split.

use rayon::prelude::*;

/// Work (elements times cost) below which a kernel stays on the calling thread.
pub(crate) const PAR_MIN: usize = 32 * 1024;

/// Calls `f(first_row, rows)` over runs of whole rows of `out` (`row_len` elements each),
/// in parallel when `rows * cost_per_row` is large. `row_len == 0` or an empty `out` does
/// nothing.
pub(crate) fn for_rows<T: Send>(
    out: &mut [T],
    row_len: usize,
    cost_per_row: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    if row_len == 0 || out.is_empty() {
        return;
    }
    let rows = out.len() / row_len;
    let work = rows.saturating_mul(cost_per_row.max(1));
    let threads = rayon::current_num_threads();
    if threads <= 1 || rows < 2 || work < PAR_MIN {
        f(0, out);
        return;
    }
    let tasks = (threads * 4).min(rows).min((work / (PAR_MIN / 2)).max(2));
    let per_task = rows.div_ceil(tasks);
    out.par_chunks_mut(per_task * row_len)
        .enumerate()
        .for_each(|(i, chunk)| f(i * per_task, chunk));
}

/// Whether work of this size is worth splitting across threads.
pub(crate) fn worth_splitting(work: usize) -> bool {
    work >= PAR_MIN && rayon::current_num_threads() > 1
}
