//! Segment reductions: `SegmentSum`, `SegmentMean`, `SegmentProd`, `SegmentMax`,
//! `SegmentMin` (sorted 1-D ids over the first dim) and `UnsortedSegmentSum`,
//! `UnsortedSegmentProd`, `UnsortedSegmentMax`, `UnsortedSegmentMin` (ids of any shape that
//! prefixes the data's, `num_segments` given).
//!
//! Each id adds a whole contiguous data row into its output row (vectorised).
//!
//! Invariants (TensorFlow's): sorted ids must be non-decreasing and non-negative, and the
//! output has `last id + 1` rows whose empty segments are 0 (1 for Prod); unsorted ids must
//! be below `num_segments`, negative ids are dropped, and empty segments hold the identity
//! (0, 1, lowest finite value for Max, highest for Min); integer sums and products wrap,
//! an integer mean truncates; f16/bf16 are computed in f32.

use rill_graph::{DType, Error, Result, Tensor};

use super::broadcast::alloc;
use super::num::{is_half, via_f32, Float, Int};
use super::util::{match_float, match_int, scalar_i64, take};
use crate::{unsupported_dtype, Kernel, KernelContext, KernelRegistry};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sum,
    Mean,
    Prod,
    Max,
    Min,
}

/// Folds data rows into their segments' rows; returns the rows and per-segment counts.
fn fold<T: Copy>(
    data: &[T],
    ids: &[i64],
    inner: usize,
    nseg: usize,
    init: T,
    f: impl Fn(T, T) -> T,
) -> Result<(Vec<T>, Vec<usize>)> {
    let mut out = alloc(nseg * inner, init)?;
    let mut counts = vec![0usize; nseg];
    for (i, &id) in ids.iter().enumerate() {
        if id < 0 {
            continue;
        }
        let id = id as usize;
        counts[id] += 1;
        let row = &data[i * inner..(i + 1) * inner];
        for (o, &v) in out[id * inner..(id + 1) * inner].iter_mut().zip(row) {
            *o = f(*o, v);
        }
    }
    Ok((out, counts))
}

/// Sets the rows of empty segments to `v`.
fn fill_empty<T: Copy>(out: &mut [T], counts: &[usize], inner: usize, v: T) {
    for (s, _) in counts.iter().enumerate().filter(|(_, &c)| c == 0) {
        out[s * inner..(s + 1) * inner].fill(v);
    }
}

struct Segment {
    kind: Kind,
    sorted: bool,
    name: &'static str,
}

/// What the data is folded with: ids, rows, row length, output dims.
struct Plan {
    ids: Vec<i64>,
    inner: usize,
    nseg: usize,
    dims: Vec<usize>,
}

impl Segment {
    fn plan(&self, data: &Tensor, ids: &Tensor, num: Option<&Tensor>) -> Result<Plan> {
        let v = ids.to_i64_vec()?;
        let r = ids.rank();
        let nseg = if self.sorted {
            if r != 1 || data.rank() == 0 || data.dims()[0] != v.len() {
                return Err(Error::invalid_argument(
                    "segment_ids should be the same size as dimension 0 of input.",
                ));
            }
            let nseg = v.last().map_or(0, |&l| l.max(-1) + 1);
            if let Some(&first) = v.first().filter(|&&f| f < 0) {
                return Err(Error::invalid_argument(format!(
                    "Segment id {first} out of range [0, {nseg}), possibly because 'segment_ids' input is not sorted."
                )));
            }
            if v.windows(2).any(|w| w[1] < w[0]) {
                return Err(Error::invalid_argument("segment ids are not increasing"));
            }
            nseg
        } else {
            if data.rank() < r || data.dims()[..r] != *ids.dims() {
                return Err(Error::invalid_argument(format!(
                    "data.shape = {} does not start with segment_ids.shape = {}",
                    data.shape(),
                    ids.shape()
                )));
            }
            let n = scalar_i64(
                num.ok_or_else(|| Error::internal("no num_segments"))?,
                "num_segments",
            )?;
            if n < 0 {
                return Err(Error::invalid_argument(format!(
                    "Input num_segments == {n} must not be negative."
                )));
            }
            if let Some((i, id)) = v.iter().enumerate().find(|(_, &id)| id >= n) {
                return Err(Error::invalid_argument(format!(
                    "segment_ids[{i}] = {id} is out of range [0, {n})"
                )));
            }
            n
        };
        let nseg = nseg as usize;
        let mut dims = vec![nseg];
        dims.extend_from_slice(&data.dims()[r..]);
        rill_graph::element_count(&dims)?;
        let inner = data.dims()[r..].iter().product();
        Ok(Plan {
            ids: v,
            inner,
            nseg,
            dims,
        })
    }

    fn float<T: Float>(&self, data: &Tensor, p: &Plan) -> Result<Tensor> {
        let x = data.as_slice::<T>()?;
        let (ids, inner, nseg) = (&p.ids, p.inner, p.nseg);
        let (mut out, counts) = match self.kind {
            Kind::Sum | Kind::Mean => fold(x, ids, inner, nseg, T::ZERO, |a, b| a + b)?,
            Kind::Prod => fold(x, ids, inner, nseg, T::ONE, |a, b| a * b)?,
            Kind::Max => fold(
                x,
                ids,
                inner,
                nseg,
                -T::MAX,
                |a, b| if b > a { b } else { a },
            )?,
            Kind::Min => fold(
                x,
                ids,
                inner,
                nseg,
                T::MAX,
                |a, b| if b < a { b } else { a },
            )?,
        };
        if self.kind == Kind::Mean {
            for (s, &c) in counts.iter().enumerate().filter(|(_, &c)| c > 0) {
                let n = T::from_f64(c as f64);
                out[s * inner..(s + 1) * inner]
                    .iter_mut()
                    .for_each(|v| *v = *v / n);
            }
        }
        if self.sorted && matches!(self.kind, Kind::Max | Kind::Min) {
            fill_empty(&mut out, &counts, inner, T::ZERO);
        }
        Tensor::new(&p.dims, out)
    }

    fn int<T: Int>(&self, data: &Tensor, p: &Plan) -> Result<Tensor> {
        let x = data.as_slice::<T>()?;
        let (ids, inner, nseg) = (&p.ids, p.inner, p.nseg);
        let (mut out, counts) = match self.kind {
            Kind::Sum | Kind::Mean => fold(x, ids, inner, nseg, T::ZERO, T::wrapping_add)?,
            Kind::Prod => fold(x, ids, inner, nseg, T::ONE, T::wrapping_mul)?,
            Kind::Max => fold(x, ids, inner, nseg, T::MIN, Ord::max)?,
            Kind::Min => fold(x, ids, inner, nseg, T::MAX, Ord::min)?,
        };
        if self.kind == Kind::Mean {
            for (s, &c) in counts.iter().enumerate().filter(|(_, &c)| c > 0) {
                let n = c as i128;
                for v in &mut out[s * inner..(s + 1) * inner] {
                    *v = T::from_i128(v.to_i128() / n);
                }
            }
        }
        if self.sorted && matches!(self.kind, Kind::Max | Kind::Min) {
            fill_empty(&mut out, &counts, inner, T::ZERO);
        }
        Tensor::new(&p.dims, out)
    }
}

impl Kernel for Segment {
    fn compute(&self, _cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let (data, ids, num) = if self.sorted {
            let [d, i] = take(self.name, inputs)?;
            (d, i, None)
        } else {
            let [d, i, n] = take(self.name, inputs)?;
            (d, i, Some(n))
        };
        let p = self.plan(&data, &ids, num.as_ref())?;
        let dt = data.dtype();
        let out = match_float!(dt, T => self.float::<T>(&data, &p)?, d => {
            if is_half(d) {
                via_f32(d, vec![data], |v| Ok(vec![self.float::<f32>(&v[0], &p)?]))?.remove(0)
            } else if d == DType::Bool {
                return Err(unsupported_dtype(self.name, d));
            } else {
                match_int!(d, T => self.int::<T>(&data, &p)?, d => return Err(unsupported_dtype(self.name, d)))
            }
        });
        Ok(vec![out])
    }
}

pub(crate) fn register(r: &mut KernelRegistry) {
    macro_rules! seg {
        ($($name:literal: $kind:ident, $sorted:expr;)*) => {$(
            r.cpu($name, |_| Ok(Box::new(Segment { kind: Kind::$kind, sorted: $sorted, name: $name })));
        )*};
    }
    seg! {
        "SegmentSum": Sum, true;
        "SegmentMean": Mean, true;
        "SegmentProd": Prod, true;
        "SegmentMax": Max, true;
        "SegmentMin": Min, true;
        "UnsortedSegmentSum": Sum, false;
        "UnsortedSegmentProd": Prod, false;
        "UnsortedSegmentMax": Max, false;
        "UnsortedSegmentMin": Min, false;
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{assert_close, f32s, i32s, run, run1};

    fn d() -> rill_graph::Tensor {
        f32s(&[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    }

    /// Expected values from TensorFlow 2.21.
    #[test]
    fn sorted_segments() {
        let ids = || i32s(&[3], &[0, 0, 2]);
        let want: [(&str, [f32; 6]); 5] = [
            ("SegmentSum", [4.0, 6.0, 0.0, 0.0, 5.0, 6.0]),
            ("SegmentMean", [2.0, 3.0, 0.0, 0.0, 5.0, 6.0]),
            ("SegmentProd", [3.0, 8.0, 1.0, 1.0, 5.0, 6.0]),
            ("SegmentMax", [3.0, 4.0, 0.0, 0.0, 5.0, 6.0]),
            ("SegmentMin", [1.0, 2.0, 0.0, 0.0, 5.0, 6.0]),
        ];
        for (op, w) in want {
            assert_close(&run1(op, &[], vec![d(), ids()]), &[3, 2], &w, 0.0);
        }
        assert!(run("SegmentSum", &[], vec![d(), i32s(&[3], &[1, 0, 2])]).is_err());
        assert!(run("SegmentSum", &[], vec![d(), i32s(&[3], &[-1, 0, 2])]).is_err());
        assert!(run("SegmentSum", &[], vec![d(), i32s(&[2], &[0, 0])]).is_err());
        let e = run1("SegmentSum", &[], vec![f32s(&[0, 2], &[]), i32s(&[0], &[])]);
        assert_eq!(e.dims(), &[0, 2]);
        let m = run1(
            "SegmentMean",
            &[],
            vec![i32s(&[3], &[1, 2, 4]), i32s(&[3], &[0, 0, 0])],
        );
        assert_eq!(m.as_slice::<i32>().unwrap(), &[2]);
    }

    #[test]
    fn unsorted_segments() {
        let ids = || i32s(&[3], &[0, -1, 2]);
        let n = || i32s(&[], &[4]);
        let (lo, hi) = (f32::MIN, f32::MAX);
        let want: [(&str, [f32; 8]); 4] = [
            (
                "UnsortedSegmentSum",
                [1.0, 2.0, 0.0, 0.0, 5.0, 6.0, 0.0, 0.0],
            ),
            (
                "UnsortedSegmentProd",
                [1.0, 2.0, 1.0, 1.0, 5.0, 6.0, 1.0, 1.0],
            ),
            ("UnsortedSegmentMax", [1.0, 2.0, lo, lo, 5.0, 6.0, lo, lo]),
            ("UnsortedSegmentMin", [1.0, 2.0, hi, hi, 5.0, 6.0, hi, hi]),
        ];
        for (op, w) in want {
            assert_close(&run1(op, &[], vec![d(), ids(), n()]), &[4, 2], &w, 0.0);
        }
        let e = run(
            "UnsortedSegmentSum",
            &[],
            vec![d(), i32s(&[3], &[0, 5, 2]), n()],
        )
        .unwrap_err();
        assert_eq!(e.message, "segment_ids[1] = 5 is out of range [0, 4)");
        let two = run1(
            "UnsortedSegmentSum",
            &[],
            vec![
                i32s(&[2, 2], &[1, 2, 3, 4]),
                i32s(&[2, 2], &[0, 1, 1, 0]),
                i32s(&[], &[2]),
            ],
        );
        assert_eq!(two.as_slice::<i32>().unwrap(), &[5, 5]);
        let mx = run1(
            "UnsortedSegmentMax",
            &[],
            vec![i32s(&[2], &[1, 2]), i32s(&[2], &[0, 0]), i32s(&[], &[2])],
        );
        assert_eq!(mx.as_slice::<i32>().unwrap(), &[2, i32::MIN]);
    }
}
