//! `.npy` files <-> [`Tensor`] (through `npyz`), for `rill run` feeds and outputs and the
//! TensorFlow fixtures. C-order arrays of bool, (u)int8..64, float16/32/64.
//!
//! Invariant: a malformed or truncated file is an InvalidArgument naming the file, never a
//! panic or a partial tensor.

use std::path::Path;

use half::f16;
use npyz::{TypeChar, WriterBuilder};
use rill_graph::{Buffer, Error, Result, Tensor};

/// Reads a `.npy` file.
pub fn read_npy(path: &Path) -> Result<Tensor> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::not_found(format!("cannot read {}: {e}", path.display())))?;
    read_npy_bytes(&bytes)
        .map_err(|e| Error::new(e.code, format!("{}: {}", path.display(), e.message)))
}

/// Parses `.npy` bytes.
pub fn read_npy_bytes(bytes: &[u8]) -> Result<Tensor> {
    let bad = |e: std::io::Error| Error::invalid_argument(format!("not a valid .npy array: {e}"));
    let npy = npyz::NpyFile::new(bytes).map_err(bad)?;
    if npy.order() == npyz::Order::Fortran {
        return Err(Error::unimplemented(
            "Fortran-order .npy arrays are not supported",
        ));
    }
    let dims: Vec<usize> = npy
        .shape()
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| Error::invalid_argument("dimension too large")))
        .collect::<Result<_>>()?;
    let n = rill_graph::element_count(&dims)?;
    let npyz::DType::Plain(ts) = npy.dtype() else {
        return Err(Error::unimplemented(
            "structured .npy arrays are not supported",
        ));
    };
    // Check the payload length before decoding, so a truncated file is caught up front.
    let size = ts.num_bytes().unwrap_or(0);
    let mut data = bytes;
    npyz::NpyHeader::from_reader(&mut data).map_err(bad)?;
    if data.len() < n.saturating_mul(size) {
        return Err(Error::invalid_argument(format!(
            "truncated .npy: {} data bytes for {n} elements of {size} bytes",
            data.len()
        )));
    }
    let buffer = match (ts.type_char(), ts.size_field()) {
        (TypeChar::Float, 4) => Buffer::F32(npy.into_vec().map_err(bad)?),
        (TypeChar::Float, 8) => Buffer::F64(npy.into_vec().map_err(bad)?),
        (TypeChar::Float, 2) => Buffer::F16(npy.into_vec::<f16>().map_err(bad)?),
        (TypeChar::Int, 1) => Buffer::I8(npy.into_vec().map_err(bad)?),
        (TypeChar::Int, 2) => Buffer::I16(npy.into_vec().map_err(bad)?),
        (TypeChar::Int, 4) => Buffer::I32(npy.into_vec().map_err(bad)?),
        (TypeChar::Int, 8) => Buffer::I64(npy.into_vec().map_err(bad)?),
        (TypeChar::Uint, 1) => Buffer::U8(npy.into_vec().map_err(bad)?),
        (TypeChar::Uint, 2) => Buffer::U16(npy.into_vec().map_err(bad)?),
        (TypeChar::Uint, 4) => Buffer::U32(npy.into_vec().map_err(bad)?),
        (TypeChar::Uint, 8) => Buffer::U64(npy.into_vec().map_err(bad)?),
        (TypeChar::Bool, 1) => Buffer::Bool(npy.into_vec().map_err(bad)?),
        (c, s) => {
            return Err(Error::unimplemented(format!(
                ".npy dtype {c:?}{s} is not supported"
            )))
        }
    };
    Tensor::from_buffer(&dims, buffer)
}

/// Writes `t` as a `.npy` file.
pub fn write_npy(path: &Path, t: &Tensor) -> Result<()> {
    let bytes = npy_bytes(t)?;
    std::fs::write(path, bytes).map_err(|e| {
        Error::new(
            rill_graph::Code::PermissionDenied,
            format!("cannot write {}: {e}", path.display()),
        )
    })
}

/// Encodes `t` as `.npy` bytes.
pub fn npy_bytes(t: &Tensor) -> Result<Vec<u8>> {
    fn write<T: npyz::AutoSerialize + Clone>(
        shape: &[u64],
        values: &[T],
    ) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(shape)
            .writer(&mut out)
            .begin_nd()?;
        w.extend(values.iter().cloned())?;
        w.finish()?;
        Ok(out)
    }
    let shape: Vec<u64> = t.dims().iter().map(|&d| d as u64).collect();
    let owned = t.clone().detach();
    let r = match owned.buffer() {
        Buffer::F32(v) => write(&shape, v),
        Buffer::F64(v) => write(&shape, v),
        Buffer::F16(v) => write(&shape, v),
        Buffer::BF16(v) => write(&shape, &v.iter().map(|x| x.to_f32()).collect::<Vec<_>>()),
        Buffer::I8(v) => write(&shape, v),
        Buffer::I16(v) => write(&shape, v),
        Buffer::I32(v) => write(&shape, v),
        Buffer::I64(v) => write(&shape, v),
        Buffer::U8(v) => write(&shape, v),
        Buffer::U16(v) => write(&shape, v),
        Buffer::U32(v) => write(&shape, v),
        Buffer::U64(v) => write(&shape, v),
        Buffer::Bool(v) => write(&shape, v),
        Buffer::Arena(_) => unreachable!("detached above"),
        Buffer::String(_) | Buffer::Resource(_) => {
            return Err(Error::unimplemented(
                "string tensors cannot be written as .npy",
            ))
        }
    };
    r.map_err(|e| Error::internal(format!("encoding .npy: {e}")))
}

/// A short human summary of a tensor's values: min, max, mean of the first elements.
pub fn summary(t: &Tensor) -> String {
    let values: Option<Vec<f64>> = match t.buffer() {
        Buffer::F32(v) => Some(v.iter().map(|&x| x as f64).collect()),
        Buffer::F64(v) => Some(v.clone()),
        Buffer::I32(v) => Some(v.iter().map(|&x| x as f64).collect()),
        Buffer::I64(v) => Some(v.iter().map(|&x| x as f64).collect()),
        Buffer::U8(v) => Some(v.iter().map(|&x| x as f64).collect()),
        Buffer::Bool(v) => Some(v.iter().map(|&x| x as u8 as f64).collect()),
        _ => None,
    };
    match values {
        Some(v) if !v.is_empty() => {
            let min = v.iter().cloned().fold(f64::INFINITY, f64::min);
            let max = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            format!("min {min:.6} max {max:.6} mean {mean:.6}")
        }
        _ => format!("{t:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        for t in [
            Tensor::new(&[2, 3], vec![1.5f32, 2.0, -3.0, 0.0, 1e-9, 7.0]).unwrap(),
            Tensor::new(&[3], vec![1i64, -2, 3]).unwrap(),
            Tensor::new(&[2], vec![true, false]).unwrap(),
            Tensor::scalar(7i32),
        ] {
            let bytes = npy_bytes(&t).unwrap();
            assert_eq!(read_npy_bytes(&bytes).unwrap(), t);
            if t.num_elements() > 1 {
                let e = read_npy_bytes(&bytes[..bytes.len() - 3]).unwrap_err();
                assert_eq!(e.code, rill_graph::Code::InvalidArgument, "{e}");
            }
        }
        assert!(read_npy_bytes(b"garbage").is_err());
    }
}
