//! [`Tensor`]: a dtype, a fully known shape and a shared, typed buffer.
//!
//! Invariants: the buffer's variant always matches `dtype`, and its length always equals the
//! product of the shape. Clones share the buffer; mutation goes through
//! [`Tensor::as_mut_slice`], which copies only when the buffer is shared (copy on write).

use std::fmt;
use std::sync::Arc;

use half::{bf16, f16};
use smallvec::SmallVec;

use crate::arena::{plain_size, Arena, ArenaSlice};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::shape::Shape;

/// The concrete dims of a tensor.
pub type Dims = SmallVec<[usize; 4]>;

/// Typed element storage, one variant per dtype with values, plus [`Buffer::Arena`]: plain
/// numeric values that live in a step's memory-plan arena.
pub enum Buffer {
    F32(Vec<f32>),
    F64(Vec<f64>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    Bool(Vec<bool>),
    String(Vec<Vec<u8>>),
    Resource(Vec<ResourceHandle>),
    /// Values inside a memory-plan arena; only the executor creates these, and it copies
    /// them out ([`Tensor::detach`]) before a tensor leaves the step.
    Arena(ArenaSlice),
}

/// A handle naming a resource (a resource variable) held by a session: TensorFlow's
/// `ResourceHandle`, reduced to what Rill uses to find the resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ResourceHandle {
    pub container: String,
    pub name: String,
}

/// A Rust type that can be a tensor element.
pub trait Element: Clone + Default + Send + Sync + PartialEq + fmt::Debug + 'static {
    const DTYPE: DType;
    fn slice(buffer: &Buffer) -> Option<&[Self]>;
    fn slice_mut(buffer: &mut Buffer) -> Option<&mut [Self]>;
    fn into_buffer(values: Vec<Self>) -> Buffer;
}

macro_rules! elements {
    ($($variant:ident: $ty:ty,)*) => {
        $(impl Element for $ty {
            const DTYPE: DType = DType::$variant;
            fn slice(buffer: &Buffer) -> Option<&[Self]> {
                match buffer {
                    Buffer::$variant(v) => Some(v),
                    Buffer::Arena(a) => a.typed::<Self>(DType::$variant),
                    _ => None,
                }
            }
            fn slice_mut(buffer: &mut Buffer) -> Option<&mut [Self]> {
                match buffer {
                    Buffer::$variant(v) => Some(v),
                    Buffer::Arena(a) => a.typed_mut::<Self>(DType::$variant),
                    _ => None,
                }
            }
            fn into_buffer(values: Vec<Self>) -> Buffer { Buffer::$variant(values) }
        })*

        impl Buffer {
            pub fn len(&self) -> usize {
                match self { $(Buffer::$variant(v) => v.len(),)* Buffer::Arena(a) => a.len() }
            }
            pub fn is_empty(&self) -> bool { self.len() == 0 }
            pub fn dtype(&self) -> DType {
                match self { $(Buffer::$variant(_) => DType::$variant,)* Buffer::Arena(a) => a.dtype() }
            }
            /// The values in a buffer of their own (a copy when they live in an arena).
            pub fn to_owned_buffer(&self) -> Buffer {
                match self {
                    $(Buffer::$variant(v) => Buffer::$variant(v.clone()),)*
                    Buffer::Arena(a) => match a.dtype() {
                        $(DType::$variant => Buffer::$variant(
                            a.typed::<$ty>(DType::$variant).map(<[$ty]>::to_vec).unwrap_or_default()
                        ),)*
                        _ => unreachable!("arena views hold plain numeric dtypes only"),
                    },
                }
            }
            /// `n` default values (zero, false, empty string) of `dtype`.
            pub fn zeros(dtype: DType, n: usize) -> Result<Buffer> {
                match dtype {
                    $(DType::$variant => Ok(Buffer::$variant(try_filled(n, <$ty>::default())?)),)*
                    other => Err(Error::unimplemented(format!(
                        "tensors of dtype {other} cannot hold values in Rill yet"
                    ))),
                }
            }
        }
    };
}

elements! {
    F32: f32, F64: f64, F16: f16, BF16: bf16, I8: i8, I16: i16, I32: i32, I64: i64,
    U8: u8, U16: u16, U32: u32, U64: u64, Bool: bool, String: Vec<u8>,
    Resource: ResourceHandle,
}

impl Clone for Buffer {
    /// A deep copy; an arena view becomes a buffer of its own, so copy-on-write never
    /// writes into memory another tensor may be given.
    fn clone(&self) -> Buffer {
        self.to_owned_buffer()
    }
}

impl PartialEq for Buffer {
    fn eq(&self, other: &Buffer) -> bool {
        match (self, other) {
            (Buffer::Arena(_), _) => self.to_owned_buffer() == *other,
            (_, Buffer::Arena(_)) => *self == other.to_owned_buffer(),
            _ => self.dtype() == other.dtype() && owned_eq(self, other),
        }
    }
}

macro_rules! owned_eq {
    ($($variant:ident),*) => {
        fn owned_eq(a: &Buffer, b: &Buffer) -> bool {
            match (a, b) {
                $((Buffer::$variant(x), Buffer::$variant(y)) => x == y,)*
                _ => false,
            }
        }
    };
}
owned_eq!(F32, F64, F16, BF16, I8, I16, I32, I64, U8, U16, U32, U64, Bool, String, Resource);

/// A vector of `n` copies of `value`, failing with ResourceExhausted instead of aborting
/// when the memory is not there.
pub fn try_filled<T: Clone>(n: usize, value: T) -> Result<Vec<T>> {
    let mut v = try_with_capacity(n)?;
    v.resize(n, value);
    Ok(v)
}

/// An empty vector with room for exactly `n` elements, or ResourceExhausted when they
/// cannot be allocated (never an abort on absurd sizes).
pub fn try_with_capacity<T>(n: usize) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        Error::resource_exhausted(format!(
            "cannot allocate {n} elements of {} bytes",
            std::mem::size_of::<T>()
        ))
    })?;
    Ok(v)
}

/// A dense tensor value.
#[derive(Clone, PartialEq)]
pub struct Tensor {
    dims: Dims,
    data: Arc<Buffer>,
}

/// The element count of `dims`, or InvalidArgument when it overflows.
pub fn element_count(dims: &[usize]) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::invalid_argument(format!("shape {dims:?} has too many elements")))
}

impl Tensor {
    /// A tensor from its values in row-major order.
    pub fn new<T: Element>(dims: &[usize], values: Vec<T>) -> Result<Tensor> {
        Tensor::from_buffer(dims, T::into_buffer(values))
    }

    pub fn from_buffer(dims: &[usize], data: Buffer) -> Result<Tensor> {
        let n = element_count(dims)?;
        if n != data.len() {
            return Err(Error::invalid_argument(format!(
                "shape {dims:?} needs {n} values, got {}",
                data.len()
            )));
        }
        Ok(Tensor {
            dims: dims.into(),
            data: Arc::new(data),
        })
    }

    pub fn scalar<T: Element>(value: T) -> Tensor {
        Tensor {
            dims: Dims::new(),
            data: Arc::new(T::into_buffer(vec![value])),
        }
    }

    /// A rank-1 tensor.
    pub fn vector<T: Element>(values: Vec<T>) -> Tensor {
        Tensor {
            dims: SmallVec::from_slice(&[values.len()]),
            data: Arc::new(T::into_buffer(values)),
        }
    }

    /// A tensor of zeros (false, empty strings) of the given dtype and shape.
    pub fn zeros(dtype: DType, dims: &[usize]) -> Result<Tensor> {
        let n = element_count(dims)?;
        Tensor::from_buffer(dims, Buffer::zeros(dtype, n)?)
    }

    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    pub fn dims(&self) -> &[usize] {
        &self.dims
    }

    pub fn rank(&self) -> usize {
        self.dims.len()
    }

    pub fn num_elements(&self) -> usize {
        self.data.len()
    }

    /// The shape as a (fully known) graph-time [`Shape`].
    pub fn shape(&self) -> Shape {
        Shape::known(&self.dims)
    }

    pub fn buffer(&self) -> &Buffer {
        &self.data
    }

    /// A tensor of `dims` whose values live in `arena` from byte `offset` (whatever the
    /// block holds there).
    ///
    /// # Safety
    /// While the returned tensor (or a clone sharing its buffer) is alive, no other tensor
    /// whose range overlaps it may be written, and it may not be written while another
    /// overlapping tensor is read: the memory plan's lifetimes must guarantee this.
    pub unsafe fn in_arena(
        arena: &Arc<Arena>,
        offset: usize,
        dtype: DType,
        dims: &[usize],
    ) -> Result<Tensor> {
        let n = element_count(dims)?;
        Ok(Tensor {
            dims: dims.into(),
            data: Arc::new(Buffer::Arena(ArenaSlice::new(arena, offset, n, dtype)?)),
        })
    }

    /// The arena view behind this tensor, if its values live in an arena.
    pub fn arena_slice(&self) -> Option<&ArenaSlice> {
        match &*self.data {
            Buffer::Arena(a) => Some(a),
            _ => None,
        }
    }

    /// This tensor with values in a buffer of its own: a copy when they live in an arena
    /// (done before a tensor leaves its step), the tensor itself otherwise.
    pub fn detach(self) -> Tensor {
        match &*self.data {
            Buffer::Arena(a) => Tensor {
                data: Arc::new(Buffer::Arena(a.clone()).to_owned_buffer()),
                dims: self.dims,
            },
            _ => self,
        }
    }

    /// Bytes of the values when the dtype is plain numeric (what a memory plan reserves).
    pub fn plain_bytes(&self) -> Option<usize> {
        plain_size(self.dtype()).map(|s| s * self.num_elements())
    }

    /// Whether this tensor holds the only reference to its buffer (so writing through
    /// [`Tensor::as_mut_slice`] does not copy).
    pub fn is_exclusive(&mut self) -> bool {
        Arc::get_mut(&mut self.data).is_some()
    }

    /// Whether two tensors share one buffer (a clone, a reshape, a forwarded input).
    pub fn shares_buffer_with(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.data, &other.data)
    }

    /// The values, or InvalidArgument when `T` is not this tensor's dtype.
    pub fn as_slice<T: Element>(&self) -> Result<&[T]> {
        T::slice(&self.data).ok_or_else(|| self.dtype_error(T::DTYPE))
    }

    /// Mutable values; copies the buffer first if another tensor shares it.
    pub fn as_mut_slice<T: Element>(&mut self) -> Result<&mut [T]> {
        let dtype = self.dtype();
        T::slice_mut(Arc::make_mut(&mut self.data)).ok_or_else(|| {
            Error::invalid_argument(format!(
                "tensor has dtype {dtype}, not the requested {}",
                T::DTYPE
            ))
        })
    }

    /// The single value of a scalar (or one-element) tensor.
    pub fn scalar_value<T: Element>(&self) -> Result<T> {
        match self.as_slice::<T>()? {
            [v] => Ok(v.clone()),
            _ => Err(Error::invalid_argument(format!(
                "expected a scalar, got shape {}",
                self.shape()
            ))),
        }
    }

    /// The same values with new dims of the same element count.
    pub fn reshape(&self, dims: &[usize]) -> Result<Tensor> {
        if element_count(dims)? != self.num_elements() {
            return Err(Error::invalid_argument(format!(
                "cannot reshape a tensor of {} elements to {dims:?}",
                self.num_elements()
            )));
        }
        Ok(Tensor {
            dims: dims.into(),
            data: self.data.clone(),
        })
    }

    /// Integer values (any integer dtype) widened to i64: shapes, axes, indices.
    pub fn to_i64_vec(&self) -> Result<Vec<i64>> {
        if let Buffer::Arena(a) = &*self.data {
            let owned =
                Tensor::from_buffer(&self.dims, Buffer::Arena(a.clone()).to_owned_buffer())?;
            return owned.to_i64_vec();
        }
        Ok(match &*self.data {
            Buffer::I32(v) => v.iter().map(|&x| x as i64).collect(),
            Buffer::I64(v) => v.clone(),
            Buffer::I16(v) => v.iter().map(|&x| x as i64).collect(),
            Buffer::I8(v) => v.iter().map(|&x| x as i64).collect(),
            Buffer::U8(v) => v.iter().map(|&x| x as i64).collect(),
            Buffer::U16(v) => v.iter().map(|&x| x as i64).collect(),
            Buffer::U32(v) => v.iter().map(|&x| x as i64).collect(),
            other => {
                return Err(Error::invalid_argument(format!(
                    "expected an integer tensor, got {}",
                    other.dtype()
                )))
            }
        })
    }

    fn dtype_error(&self, wanted: DType) -> Error {
        Error::invalid_argument(format!(
            "tensor has dtype {}, not the requested {wanted}",
            self.dtype()
        ))
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor<{}{}>", self.dtype(), self.shape())?;
        let n = self.num_elements().min(8);
        macro_rules! show {
            ($v:expr) => {
                write!(f, " {:?}", &$v[..n])?
            };
        }
        let owned;
        let data = match &*self.data {
            Buffer::Arena(a) => {
                owned = Buffer::Arena(a.clone()).to_owned_buffer();
                &owned
            }
            other => other,
        };
        match data {
            Buffer::F32(v) => show!(v),
            Buffer::F64(v) => show!(v),
            Buffer::F16(v) => show!(v),
            Buffer::BF16(v) => show!(v),
            Buffer::I8(v) => show!(v),
            Buffer::I16(v) => show!(v),
            Buffer::I32(v) => show!(v),
            Buffer::I64(v) => show!(v),
            Buffer::U8(v) => show!(v),
            Buffer::U16(v) => show!(v),
            Buffer::U32(v) => show!(v),
            Buffer::U64(v) => show!(v),
            Buffer::Bool(v) => show!(v),
            Buffer::String(v) => {
                let s: Vec<_> = v[..n].iter().map(|s| String::from_utf8_lossy(s)).collect();
                write!(f, " {s:?}")?
            }
            Buffer::Resource(v) => show!(v),
            Buffer::Arena(_) => unreachable!("copied out above"),
        }
        if self.num_elements() > n {
            f.write_str("...")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn construction_checks_lengths() {
        let t = Tensor::new(&[2, 3], vec![1.0f32; 6]).unwrap();
        assert_eq!(t.dtype(), DType::F32);
        assert_eq!(t.shape().to_string(), "[2,3]");
        assert!(Tensor::new(&[2, 3], vec![1.0f32; 5]).is_err());
        assert!(t.as_slice::<i32>().is_err());
        assert_eq!(Tensor::scalar(3i64).scalar_value::<i64>().unwrap(), 3);
    }

    #[test]
    fn copy_on_write() {
        let a = Tensor::vector(vec![1i32, 2, 3]);
        let mut b = a.clone();
        b.as_mut_slice::<i32>().unwrap()[0] = 9;
        assert_eq!(a.as_slice::<i32>().unwrap(), &[1, 2, 3]);
        assert_eq!(b.as_slice::<i32>().unwrap(), &[9, 2, 3]);
    }

    #[test]
    fn absurd_sizes_are_errors_not_aborts() {
        assert!(Tensor::zeros(DType::F32, &[usize::MAX, 2]).is_err());
        let e = Tensor::zeros(DType::F64, &[1 << 40, 1 << 20]).unwrap_err();
        assert_eq!(e.code, crate::Code::ResourceExhausted);
        assert!(Tensor::zeros(DType::Variant, &[1]).is_err());
    }
}
