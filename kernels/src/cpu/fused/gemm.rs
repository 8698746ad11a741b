//! How the fused contractions drive their GEMM so the epilogue runs on output rows while
//! they are in cache: [`gemm_rows`] (a product in row blocks with a callback) and the
//! rule for when row blocks run in parallel ([`parallel_row_blocks`]).
//!
//! Invariant: the callback sees every output row exactly once, after the GEMM wrote it;
//! the product is the one `MatMul` computes (the same `gemm` calls per element).

use rayon::prelude::*;
use rill_graph::Result;

use crate::cpu::math::matmul::{gemm_into, gemm_into_serial, Mat, MatElem};
use crate::cpu::math::par::for_rows;

/// Fewest output rows per task when a product is split into row blocks with one
/// single-threaded GEMM each: below this, repacking `b` for every block costs more than
/// the GEMM's own parallelism.
pub(crate) const MIN_BLOCK_ROWS: usize = 256;

/// Rows per block when a product with `rows` output rows and `work` multiply-adds is
/// worth computing as parallel row blocks (every thread gets at least two blocks of at
/// least [`MIN_BLOCK_ROWS`] rows); `None` when one GEMM over all rows is better.
pub(crate) fn parallel_row_blocks(rows: usize, work: usize) -> Option<usize> {
    let threads = rayon::current_num_threads();
    let big = work >= 48 * 48 * 48 && threads > 1;
    (big && rows >= 2 * threads * MIN_BLOCK_ROWS)
        .then(|| (rows / (2 * threads)).clamp(MIN_BLOCK_ROWS, 4 * MIN_BLOCK_ROWS))
}

/// Called on blocks of finished output rows, `(first_row, rows)`, possibly from several
/// threads at once on disjoint blocks (so it need not split its work).
pub(crate) type RowsDone<'a, T> = &'a (dyn Fn(usize, &mut [T]) + Sync);

/// `out[m x n] = a * b` (`out` row-major, exactly `m * n` values) with `after` run on
/// every row of the result once.
///
/// Large products with many rows run as parallel row blocks, one single-threaded GEMM
/// each, and `after` runs on each block right after its GEMM, while it is in cache.
/// Otherwise one GEMM (with `MatMul`'s parallelism) computes all rows and `after` then
/// runs over row blocks in parallel: never more work than the GEMM and one elementwise
/// pass.
pub(crate) fn gemm_rows<T: MatElem>(
    (m, n, k): (usize, usize, usize),
    a: Mat<T>,
    b: Mat<T>,
    out: &mut [T],
    after: RowsDone<T>,
) -> Result<()> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    let work = m.saturating_mul(n).saturating_mul(k);
    match parallel_row_blocks(m, work).filter(|_| k > 0) {
        Some(mb) => out
            .par_chunks_mut(mb * n)
            .enumerate()
            .try_for_each(|(i, rows)| {
                let av = Mat {
                    data: a.data.get(i * mb * a.rs..).unwrap_or(&[]),
                    rs: a.rs,
                    cs: a.cs,
                };
                gemm_into_serial(rows.len() / n, n, k, av, b, rows, n)?;
                after(i * mb, rows);
                Ok(())
            }),
        None => {
            gemm_into(m, n, k, a, b, out, n, false)?;
            for_rows(out, n, n, after);
            Ok(())
        }
    }
}
