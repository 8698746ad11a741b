//! The data-movement engine shared by Transpose, Slice, StridedSlice, ReverseV2, Tile,
//! BroadcastTo, Pad and StridedSliceGrad: copying an affine view of a buffer.
//!
//! A view is an element offset plus, per output dim, a size and a signed stride (in
//! elements; zero broadcasts, negative reverses). [`gather`] reads a view into a new
//! row-major vector; [`scatter`] writes a row-major vector into a view of an existing one.
//! Dims are coalesced first (size-1 dims dropped, contiguous neighbours merged), contiguous
//! runs are copied as slices, transposes use cache-blocked tiles, and large outputs are
//! filled in parallel with rayon.
//!
//! Invariant: callers guarantee every addressed element lies inside the buffer; an
//! out-of-range view is a caller bug and panics on the bounds check (never UB).

use rayon::prelude::*;
use rill_graph::{Buffer, Result, Tensor};

use super::util::filled;

/// Outputs at least this large are filled in parallel.
const PARALLEL_MIN: usize = 1 << 16;
/// Side of the square tiles of blocked transposes.
const TILE: usize = 32;

/// Drops size-1 dims and merges neighbours that are contiguous with each other.
fn coalesce(dims: &[usize], strides: &[isize]) -> (Vec<usize>, Vec<isize>) {
    let mut d: Vec<usize> = Vec::with_capacity(dims.len());
    let mut s: Vec<isize> = Vec::with_capacity(dims.len());
    for (&n, &st) in dims.iter().zip(strides) {
        if n == 1 {
            continue;
        }
        if let (Some(&ld), Some(&ls)) = (d.last(), s.last()) {
            if ls == st * n as isize {
                *d.last_mut().expect("non-empty") = ld * n;
                *s.last_mut().expect("non-empty") = st;
                continue;
            }
        }
        d.push(n);
        s.push(st);
    }
    if d.is_empty() {
        d.push(1);
        s.push(1);
    }
    (d, s)
}

/// Fills `out` with the view elements at row-major positions `start..start + out.len()`.
fn fill<T: Clone>(
    out: &mut [T],
    start: usize,
    src: &[T],
    offset: isize,
    dims: &[usize],
    strides: &[isize],
) {
    let r = dims.len();
    let inner = dims[r - 1];
    let istride = strides[r - 1];
    let mut idx = vec![0usize; r];
    let mut rem = start;
    for d in (0..r).rev() {
        idx[d] = rem % dims[d];
        rem /= dims[d];
    }
    let mut base = offset;
    for d in 0..r - 1 {
        base += idx[d] as isize * strides[d];
    }
    let mut pos = 0;
    let mut j0 = idx[r - 1];
    while pos < out.len() {
        let take = (inner - j0).min(out.len() - pos);
        let s = base + j0 as isize * istride;
        let dst = &mut out[pos..pos + take];
        match istride {
            1 => dst.clone_from_slice(&src[s as usize..s as usize + take]),
            0 => dst.fill(src[s as usize].clone()),
            _ => {
                for (k, o) in dst.iter_mut().enumerate() {
                    *o = src[(s + k as isize * istride) as usize].clone();
                }
            }
        }
        pos += take;
        j0 = 0;
        for d in (0..r - 1).rev() {
            idx[d] += 1;
            base += strides[d];
            if idx[d] < dims[d] {
                break;
            }
            base -= strides[d] * dims[d] as isize;
            idx[d] = 0;
        }
    }
}

/// Fills one `rows x cols` matrix of a blocked transpose: `out[i][j] = src[base + i*sr + j*sc]`.
fn fill_tiled<T: Clone>(out: &mut [T], cols: usize, src: &[T], base: isize, sr: isize, sc: isize) {
    let rows = out.len() / cols;
    for i0 in (0..rows).step_by(TILE) {
        let i1 = (i0 + TILE).min(rows);
        for j0 in (0..cols).step_by(TILE) {
            let j1 = (j0 + TILE).min(cols);
            for i in i0..i1 {
                let row = &mut out[i * cols + j0..i * cols + j1];
                let b = base + i as isize * sr;
                for (k, o) in row.iter_mut().enumerate() {
                    *o = src[(b + (j0 + k) as isize * sc) as usize].clone();
                }
            }
        }
    }
}

/// The offset of the `m`-th matrix (over all dims but the last two).
fn matrix_base(m: usize, offset: isize, dims: &[usize], strides: &[isize]) -> isize {
    let mut rem = m;
    let mut base = offset;
    for d in (0..dims.len() - 2).rev() {
        base += (rem % dims[d]) as isize * strides[d];
        rem /= dims[d];
    }
    base
}

/// Reads the view (`offset`, `dims`, `strides`) of `src` into a new row-major vector.
pub(super) fn gather<T: Clone + Default + Send + Sync>(
    src: &[T],
    offset: usize,
    dims: &[usize],
    strides: &[isize],
) -> Result<Vec<T>> {
    let n = rill_graph::element_count(dims)?;
    if n == 0 {
        return Ok(Vec::new());
    }
    let offset = offset as isize;
    let (dims, strides) = coalesce(dims, strides);
    let r = dims.len();
    if r == 1 && strides[0] == 1 {
        let o = offset as usize;
        return Ok(src[o..o + n].to_vec());
    }
    let mut out = filled(n, T::default())?;
    let (rows, cols) = if r >= 2 {
        (dims[r - 2], dims[r - 1])
    } else {
        (1, dims[0])
    };
    let tiled = r >= 2
        && rows >= TILE / 4
        && cols >= TILE / 4
        && strides[r - 1].unsigned_abs() > 1
        && strides[r - 2].unsigned_abs() < strides[r - 1].unsigned_abs();
    if tiled {
        let (sr, sc) = (strides[r - 2], strides[r - 1]);
        let matrix = rows * cols;
        let run = |(m, chunk): (usize, &mut [T])| {
            let base = matrix_base(m, offset, &dims, &strides);
            if n >= PARALLEL_MIN && matrix >= PARALLEL_MIN {
                chunk
                    .par_chunks_mut(TILE * cols)
                    .enumerate()
                    .for_each(|(b, block)| {
                        fill_tiled(block, cols, src, base + (b * TILE) as isize * sr, sr, sc)
                    });
            } else {
                fill_tiled(chunk, cols, src, base, sr, sc);
            }
        };
        if n >= PARALLEL_MIN {
            out.par_chunks_mut(matrix).enumerate().for_each(run);
        } else {
            out.chunks_mut(matrix).enumerate().for_each(run);
        }
    } else if n >= PARALLEL_MIN {
        let chunk = (n / (4 * rayon::current_num_threads().max(1))).max(PARALLEL_MIN / 4);
        out.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(c, part)| fill(part, c * chunk, src, offset, &dims, &strides));
    } else {
        fill(&mut out, 0, src, offset, &dims, &strides);
    }
    Ok(out)
}

/// Writes `src` (row-major over `dims`) into the view (`offset`, `dims`, `strides`) of `out`.
pub(super) fn scatter<T: Clone>(
    out: &mut [T],
    offset: usize,
    dims: &[usize],
    strides: &[isize],
    src: &[T],
) {
    if src.is_empty() {
        return;
    }
    let (dims, strides) = coalesce(dims, strides);
    let r = dims.len();
    let inner = dims[r - 1];
    let istride = strides[r - 1];
    let mut idx = vec![0usize; r];
    let mut base = offset as isize;
    for row in src.chunks(inner) {
        if istride == 1 {
            out[base as usize..base as usize + inner].clone_from_slice(row);
        } else {
            for (k, v) in row.iter().enumerate() {
                out[(base + k as isize * istride) as usize] = v.clone();
            }
        }
        for d in (0..r - 1).rev() {
            idx[d] += 1;
            base += strides[d];
            if idx[d] < dims[d] {
                break;
            }
            base -= strides[d] * dims[d] as isize;
            idx[d] = 0;
        }
    }
}

/// [`gather`] on a tensor of any dtype; the result has shape `dims`.
pub(super) fn gather_tensor(
    t: &Tensor,
    offset: usize,
    dims: &[usize],
    strides: &[isize],
) -> Result<Tensor> {
    macro_rules! go {
        ($($v:ident),*) => {
            match t.buffer() {
                $(Buffer::$v(s) => Buffer::$v(gather(s, offset, dims, strides)?),)*
                Buffer::Arena(_) => return gather_tensor(&t.clone().detach(), offset, dims, strides),
            }
        };
    }
    let buffer =
        go!(F32, F64, F16, BF16, I8, I16, I32, I64, U8, U16, U32, U64, Bool, String, Resource);
    Tensor::from_buffer(dims, buffer)
}

/// Signed strides of a row-major tensor of `dims`.
pub(super) fn signed_strides(dims: &[usize]) -> Vec<isize> {
    super::util::row_strides(dims)
        .into_iter()
        .map(|s| s as isize)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesces_contiguous_dims() {
        assert_eq!(coalesce(&[2, 3, 4], &[12, 4, 1]), (vec![24], vec![1]));
        assert_eq!(coalesce(&[2, 1, 4], &[4, 99, 1]), (vec![8], vec![1]));
        assert_eq!(coalesce(&[1, 1], &[5, 7]), (vec![1], vec![1]));
        assert_eq!(coalesce(&[3, 2], &[1, 3]), (vec![3, 2], vec![1, 3]));
    }

    #[test]
    fn gathers_views() {
        let src: Vec<i32> = (0..6).collect();
        // transpose of [2,3]
        assert_eq!(
            gather(&src, 0, &[3, 2], &[1, 3]).unwrap(),
            vec![0, 3, 1, 4, 2, 5]
        );
        // reverse
        assert_eq!(
            gather(&src, 5, &[6], &[-1]).unwrap(),
            vec![5, 4, 3, 2, 1, 0]
        );
        // broadcast a row
        assert_eq!(
            gather(&src, 0, &[2, 3], &[0, 1]).unwrap(),
            vec![0, 1, 2, 0, 1, 2]
        );
        assert!(gather(&src, 0, &[0, 3], &[3, 1]).unwrap().is_empty());
    }

    #[test]
    fn big_transposes_match_naive() {
        for &(r, c) in &[(300usize, 517usize), (1, 70_000), (257, 255)] {
            let src: Vec<u32> = (0..(r * c) as u32).collect();
            let out = gather(&src, 0, &[c, r], &[1, c as isize]).unwrap();
            for j in 0..c {
                for i in 0..r {
                    assert_eq!(out[j * r + i], src[i * c + j]);
                }
            }
        }
    }

    #[test]
    fn big_strided_fill_matches_naive() {
        let src: Vec<u64> = (0..200_000).collect();
        let out = gather(&src, 199_999, &[400, 250], &[-500, -2]).unwrap();
        for (k, v) in out.iter().enumerate() {
            let (i, j) = (k / 250, k % 250);
            assert_eq!(*v, 199_999 - (i * 500 + j * 2) as u64);
        }
    }

    #[test]
    fn scatters_into_views() {
        let mut out = vec![0i32; 12];
        scatter(&mut out, 5, &[2, 2], &[4, 1], &[1, 2, 3, 4]);
        assert_eq!(out, vec![0, 0, 0, 0, 0, 1, 2, 0, 0, 3, 4, 0]);
    }
}
