//! Tensors on the wire: a [`TensorMeta`] header (dtype, dims, encoding, byte count) and the
//! values as packed little-endian bytes, inline for small tensors or cut into chunks for
//! `RecvTensor`'s stream.
//!
//! Invariants: numeric and bool tensors travel `RAW` (TensorFlow's `tensor_content`
//! layout), strings and resource handles as a serialized `TensorProto`; a decoded tensor
//! always has exactly the dims and byte count its header announced; a header that lies
//! (wrong size, absurd dims, unknown dtype) is InvalidArgument, and one announcing more
//! than can be allocated is ResourceExhausted, never a panic.

use bytes::Bytes;
use prost::Message;
use rill_graph::{Buffer, DType, Error, Result, Tensor};

use crate::proto::{Encoding, TensorMeta, WireTensor};

/// The bytes of one `RecvTensor` chunk: small enough that the sender's writes and the
/// receiver's copies overlap, large enough that per-message costs vanish (1 MiB measured
/// best on loopback against 256 KiB, 4 MiB and 16 MiB).
pub const CHUNK_BYTES: usize = 1 << 20;

/// `data` cut into [`CHUNK_BYTES`] pieces sharing its buffer (one, empty, when `data` is).
pub fn chunks(data: Bytes) -> impl Iterator<Item = Bytes> {
    let n = data.len();
    (0..n.div_ceil(CHUNK_BYTES).max(1))
        .map(move |i| data.slice(i * CHUNK_BYTES..((i + 1) * CHUNK_BYTES).min(n)))
}

/// The header and the value bytes of `tensor`.
pub fn encode(tensor: &Tensor, is_dead: bool) -> (TensorMeta, Bytes) {
    let (encoding, data) = match raw_bytes(tensor) {
        Some(b) => (Encoding::Raw, b),
        None => (
            Encoding::TensorProto,
            Bytes::from(tensor.to_proto().encode_to_vec()),
        ),
    };
    let meta = TensorMeta {
        dtype: tensor.dtype().to_proto() as i32,
        dims: tensor.dims().iter().map(|&d| d as i64).collect(),
        encoding: encoding as i32,
        num_bytes: data.len() as u64,
        is_dead,
    };
    (meta, data)
}

/// The header of a numeric or bool tensor sent raw (its bytes follow elsewhere).
pub fn raw_header(tensor: &Tensor) -> TensorMeta {
    TensorMeta {
        dtype: tensor.dtype().to_proto() as i32,
        dims: tensor.dims().iter().map(|&d| d as i64).collect(),
        encoding: Encoding::Raw as i32,
        num_bytes: tensor.plain_bytes().unwrap_or(0) as u64,
        is_dead: false,
    }
}

/// `tensor` as one message.
pub fn to_wire(tensor: &Tensor) -> WireTensor {
    let (meta, data) = encode(tensor, false);
    WireTensor {
        meta: Some(meta),
        data,
        stream_key: String::new(),
    }
}

/// The tensor of a message.
pub fn from_wire(wire: &WireTensor) -> Result<Tensor> {
    let meta = wire
        .meta
        .as_ref()
        .ok_or_else(|| Error::invalid_argument("a tensor message has no header"))?;
    let mut builder = TensorBuilder::new(meta)?;
    builder.push(&wire.data)?;
    builder.finish()
}

/// A numeric tensor's values seen as bytes, so a `Bytes` can share its buffer.
struct PodBytes(Tensor);

macro_rules! pod_view {
    ($tensor:expr, $($variant:ident: $ty:ty),*) => {
        match $tensor.dtype() {
            $(DType::$variant => $tensor.as_slice::<$ty>().ok().map(|v| bytemuck::cast_slice(v)),)*
            _ => None,
        }
    };
}

fn pod_view(tensor: &Tensor) -> Option<&[u8]> {
    use half::{bf16, f16};
    pod_view!(tensor, F32: f32, F64: f64, F16: f16, BF16: bf16, I8: i8, I16: i16,
        I32: i32, I64: i64, U8: u8, U16: u16, U32: u32, U64: u64)
}

impl AsRef<[u8]> for PodBytes {
    fn as_ref(&self) -> &[u8] {
        pod_view(&self.0).unwrap_or_default()
    }
}

/// Whether [`encode`] shares the tensor's buffer (numeric dtypes) instead of copying it
/// (bool, strings, resource handles).
pub fn encodes_without_copy(tensor: &Tensor) -> bool {
    tensor.dtype() != DType::Bool && pod_view(tensor).is_some()
}

/// The packed values of a numeric or bool tensor, `None` for other dtypes. Numeric values
/// are not copied: the bytes share the tensor's buffer.
fn raw_bytes(tensor: &Tensor) -> Option<Bytes> {
    if tensor.dtype() == DType::Bool {
        let v = tensor.as_slice::<bool>().ok()?;
        return Some(v.iter().map(|&b| b as u8).collect::<Vec<u8>>().into());
    }
    pod_view(tensor)?;
    // An arena view may be reused by a later step: owned values only.
    Some(Bytes::from_owner(PodBytes(tensor.clone().detach())))
}

/// Assembles a tensor from its header and its bytes as they arrive.
pub struct TensorBuilder {
    dtype: DType,
    dims: Vec<usize>,
    num_bytes: usize,
    /// The values so far (RAW), or the serialized proto (TENSOR_PROTO).
    values: Partial,
    /// Bytes of an element split across two pushes.
    carry: Vec<u8>,
    element_size: usize,
    filled: usize,
    pub is_dead: bool,
}

/// Appends little-endian `bytes` (whole elements) to `v`: one copy, no zeroing first,
/// wherever in a network buffer the bytes sit.
fn extend_pod<T: bytemuck::Pod>(v: &mut Vec<T>, bytes: &[u8]) {
    let n = bytes.len() / std::mem::size_of::<T>();
    v.reserve(n);
    let spare = &mut v.spare_capacity_mut()[..n];
    // SAFETY: `spare` is `n` elements of writable, uninitialised capacity, which we fill
    // with exactly `n * size_of::<T>()` bytes (a byte copy needs no alignment); `T` is
    // Pod, so any bytes are a valid `T`, and only then is the length extended over them.
    unsafe {
        std::ptr::copy_nonoverlapping(
            bytes.as_ptr(),
            spare.as_mut_ptr().cast::<u8>(),
            n * std::mem::size_of::<T>(),
        );
        v.set_len(v.len() + n);
    }
}

fn reserve<T>(n: usize) -> Result<Vec<T>> {
    let mut v: Vec<T> = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        Error::resource_exhausted(format!("cannot allocate a tensor of {n} elements"))
    })?;
    advise_huge_pages(v.as_ptr().cast(), v.capacity() * std::mem::size_of::<T>());
    Ok(v)
}

/// Large receive buffers are fresh memory that is written once, front to back: asking
/// for transparent huge pages turns one page fault per 4 KiB into one per 2 MiB.
fn advise_huge_pages(start: *const u8, len: usize) {
    const HUGE: usize = 2 << 20;
    if len < 4 * HUGE {
        return;
    }
    let first = (start as usize).div_ceil(HUGE) * HUGE;
    let end = (start as usize + len) / HUGE * HUGE;
    if end > first {
        // SAFETY: the range lies inside an allocation this function's caller owns, and
        // MADV_HUGEPAGE is advice about backing pages: it never changes the contents or
        // the validity of the memory (a kernel without THP just returns an error, which
        // is ignored).
        unsafe {
            libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
        }
    }
}

macro_rules! partial {
    ($($variant:ident: $ty:ty),*) => {
        /// A tensor's values as they arrive, in their final storage.
        enum Partial {
            $($variant(Vec<$ty>),)*
            Bool(Vec<bool>),
            Proto(Vec<u8>),
        }

        impl Partial {
            fn new(dtype: DType, n: usize) -> Result<(Partial, usize)> {
                Ok(match dtype {
                    $(DType::$variant => (Partial::$variant(reserve(n)?), std::mem::size_of::<$ty>()),)*
                    DType::Bool => (Partial::Bool(reserve(n)?), 1),
                    other => {
                        return Err(Error::invalid_argument(format!(
                            "dtype {other} cannot travel raw"
                        )))
                    }
                })
            }

            /// Appends whole elements.
            fn extend(&mut self, bytes: &[u8]) {
                match self {
                    $(Partial::$variant(v) => extend_pod(v, bytes),)*
                    Partial::Bool(v) => v.extend(bytes.iter().map(|&b| b != 0)),
                    Partial::Proto(v) => v.extend_from_slice(bytes),
                }
            }

            fn into_buffer(self) -> Result<Buffer, Vec<u8>> {
                match self {
                    $(Partial::$variant(v) => Ok(Buffer::$variant(v)),)*
                    Partial::Bool(v) => Ok(Buffer::Bool(v)),
                    Partial::Proto(bytes) => Err(bytes),
                }
            }
        }
    };
}

partial!(F32: f32, F64: f64, F16: half::f16, BF16: half::bf16, I8: i8, I16: i16,
    I32: i32, I64: i64, U8: u8, U16: u16, U32: u32, U64: u64);

impl TensorBuilder {
    /// A builder for the tensor `meta` announces; InvalidArgument for a header that
    /// cannot be right, ResourceExhausted when its values cannot be allocated.
    pub fn new(meta: &TensorMeta) -> Result<TensorBuilder> {
        let (dtype, _) = DType::from_proto(meta.dtype)?;
        let dims = meta
            .dims
            .iter()
            .map(|&d| {
                usize::try_from(d).map_err(|_| {
                    Error::invalid_argument(format!("tensor header has dimension {d}"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let n = rill_graph::element_count(&dims)?;
        let encoding = Encoding::try_from(meta.encoding).map_err(|_| {
            Error::invalid_argument(format!("unknown tensor encoding {}", meta.encoding))
        })?;
        let num_bytes = usize::try_from(meta.num_bytes)
            .map_err(|_| Error::invalid_argument("tensor header announces too many bytes"))?;
        let (values, element_size) = match encoding {
            Encoding::Raw => {
                let size = match dtype {
                    DType::Bool => 1,
                    other => other.size().unwrap_or(0),
                };
                if size == 0 || n.checked_mul(size) != Some(num_bytes) {
                    return Err(Error::invalid_argument(format!(
                        "tensor header: {n} values of {dtype} are not {num_bytes} bytes"
                    )));
                }
                Partial::new(dtype, n)?
            }
            Encoding::TensorProto => (Partial::Proto(Vec::new()), 1),
        };
        Ok(TensorBuilder {
            dtype,
            dims,
            num_bytes,
            values,
            carry: Vec::new(),
            element_size,
            filled: 0,
            is_dead: meta.is_dead,
        })
    }

    /// Appends the next bytes (any split: an element may straddle two pushes).
    pub fn push(&mut self, mut data: &[u8]) -> Result<()> {
        let end = self
            .filled
            .checked_add(data.len())
            .filter(|&e| e <= self.num_bytes)
            .ok_or_else(|| {
                Error::invalid_argument(format!(
                    "tensor data exceeds the {} bytes its header announced",
                    self.num_bytes
                ))
            })?;
        self.filled = end;
        if !self.carry.is_empty() {
            let take = (self.element_size - self.carry.len()).min(data.len());
            self.carry.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.carry.len() < self.element_size {
                return Ok(());
            }
            let element = std::mem::take(&mut self.carry);
            self.values.extend(&element);
        }
        let whole = data.len() - data.len() % self.element_size;
        self.values.extend(&data[..whole]);
        self.carry.extend_from_slice(&data[whole..]);
        Ok(())
    }

    /// The tensor, once all announced bytes arrived (DataLoss otherwise).
    pub fn finish(self) -> Result<Tensor> {
        if self.filled != self.num_bytes {
            return Err(Error::new(
                rill_graph::Code::DataLoss,
                format!(
                    "tensor stream ended after {} of {} bytes",
                    self.filled, self.num_bytes
                ),
            ));
        }
        match self.values.into_buffer() {
            Ok(buffer) => Tensor::from_buffer(&self.dims, buffer),
            Err(bytes) => {
                let proto = rill_proto::tensorflow::TensorProto::decode(bytes.as_slice())
                    .map_err(|e| Error::invalid_argument(format!("bad TensorProto: {e}")))?;
                let t = Tensor::from_proto(&proto)?;
                if t.dims() != self.dims.as_slice() || t.dtype() != self.dtype {
                    return Err(Error::invalid_argument(
                        "a TensorProto does not match its header",
                    ));
                }
                Ok(t)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(t: &Tensor) -> Tensor {
        let (meta, data) = encode(t, false);
        let mut b = TensorBuilder::new(&meta).unwrap();
        for chunk in data.chunks(3) {
            b.push(chunk).unwrap();
        }
        b.finish().unwrap()
    }

    #[test]
    fn tensors_survive_chunked_transfer() {
        let cases = [
            Tensor::new(&[2, 3], vec![1f32, 2., 3., 4., 5., 6.]).unwrap(),
            Tensor::new(&[3], vec![true, false, true]).unwrap(),
            Tensor::new(&[2], vec![i64::MIN, 7]).unwrap(),
            Tensor::new(&[2], vec![b"ab".to_vec(), vec![]]).unwrap(),
            Tensor::zeros(DType::F16, &[0, 4]).unwrap(),
        ];
        for t in &cases {
            assert_eq!(&round_trip(t), t);
        }
    }

    #[test]
    fn lying_headers_are_errors() {
        let (mut meta, data) = encode(&Tensor::vector(vec![1f32, 2.]), false);
        let mut short = TensorBuilder::new(&meta).unwrap();
        short.push(&data[..4]).unwrap();
        assert_eq!(short.finish().unwrap_err().code, rill_graph::Code::DataLoss);
        let mut b = TensorBuilder::new(&meta).unwrap();
        assert!(b.push(&[0; 12]).is_err());
        meta.dims = vec![1 << 40, 1 << 40];
        assert!(TensorBuilder::new(&meta).is_err());
        meta.dims = vec![-1];
        assert!(TensorBuilder::new(&meta).is_err());
        meta.dims = vec![3];
        assert!(TensorBuilder::new(&meta).is_err());
        meta.dtype = 999;
        assert!(TensorBuilder::new(&meta).is_err());
    }
}
