//! [`Arena`]: one block of memory a memory plan carves into tensors by offset, and
//! [`ArenaSlice`], a tensor's view of its part of the block.
//!
//! Invariants: the block is 64-byte aligned and zero-initialised, so every bit pattern a
//! view reads is a valid value of its (plain numeric) dtype; a view never extends past the
//! block; the block lives as long as any view of it (each view holds an `Arc`). Whoever
//! creates views (the executor, through [`crate::Tensor::in_arena`]) guarantees that views
//! alive at the same time and overlapping are never written while another reads them: the
//! memory plan gives tensors whose lifetimes overlap disjoint ranges.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;
use std::sync::Arc;

use crate::dtype::DType;
use crate::error::{Error, Result};

/// Alignment of the block and of every offset a plan hands out.
pub const ARENA_ALIGN: usize = 64;

/// A zeroed, aligned block of memory shared by the tensors of one step.
pub struct Arena {
    ptr: NonNull<u8>,
    bytes: usize,
}

// SAFETY: the block is plain memory; access to its ranges is coordinated by the memory
// plan (see the module invariants), not by the block itself.
unsafe impl Send for Arena {}
unsafe impl Sync for Arena {}

impl Arena {
    /// A zeroed block of `bytes` bytes, or ResourceExhausted when memory is not there.
    pub fn new(bytes: usize) -> Result<Arc<Arena>> {
        let size = bytes.max(ARENA_ALIGN);
        let layout = Layout::from_size_align(size, ARENA_ALIGN).map_err(|_| {
            Error::resource_exhausted(format!("cannot plan an arena of {bytes} bytes"))
        })?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).ok_or_else(|| {
            Error::resource_exhausted(format!("cannot allocate an arena of {bytes} bytes"))
        })?;
        Ok(Arc::new(Arena { ptr, bytes: size }))
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn layout(&self) -> Layout {
        Layout::from_size_align(self.bytes, ARENA_ALIGN).expect("checked when created")
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; no view outlives the block.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout()) }
    }
}

impl std::fmt::Debug for Arena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Arena({} bytes)", self.bytes)
    }
}

/// A tensor's elements inside an [`Arena`]: `len` values of `dtype` from byte `offset`.
#[derive(Clone)]
pub struct ArenaSlice {
    arena: Arc<Arena>,
    offset: usize,
    len: usize,
    dtype: DType,
}

impl ArenaSlice {
    /// A view of `len` values of `dtype` at `offset`. Fails when the dtype is not plain
    /// numeric, the offset is misaligned, or the range leaves the block.
    pub(crate) fn new(arena: &Arc<Arena>, offset: usize, len: usize, dtype: DType) -> Result<Self> {
        let size = plain_size(dtype).ok_or_else(|| {
            Error::invalid_argument(format!("tensors of dtype {dtype} cannot live in an arena"))
        })?;
        let end = len
            .checked_mul(size)
            .and_then(|b| b.checked_add(offset))
            .filter(|&end| end <= arena.bytes);
        if end.is_none() || !offset.is_multiple_of(ARENA_ALIGN) {
            return Err(Error::internal(format!(
                "arena range {offset}+{len}x{size} does not fit a block of {} bytes",
                arena.bytes
            )));
        }
        Ok(ArenaSlice {
            arena: arena.clone(),
            offset,
            len,
            dtype,
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Byte offset in the block.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Whether this view lies in `arena`.
    pub fn is_in(&self, arena: &Arc<Arena>) -> bool {
        Arc::ptr_eq(&self.arena, arena)
    }

    /// The values, when `T` is the view's dtype.
    pub(crate) fn typed<T: 'static>(&self, dtype: DType) -> Option<&[T]> {
        if dtype != self.dtype {
            return None;
        }
        // SAFETY: the range was checked against the block, the offset is aligned for every
        // plain dtype, the block is initialised, and writers never overlap live readers.
        Some(unsafe {
            std::slice::from_raw_parts(
                self.arena.ptr.as_ptr().add(self.offset) as *const T,
                self.len,
            )
        })
    }

    /// Mutable values; the caller holds the only reference to the tensor.
    pub(crate) fn typed_mut<T: 'static>(&mut self, dtype: DType) -> Option<&mut [T]> {
        if dtype != self.dtype {
            return None;
        }
        // SAFETY: as in `typed`; `&mut self` comes from a unique `Arc<Buffer>`, and the plan
        // gives no other live tensor an overlapping range.
        Some(unsafe {
            std::slice::from_raw_parts_mut(
                self.arena.ptr.as_ptr().add(self.offset) as *mut T,
                self.len,
            )
        })
    }
}

/// The size of one element of a dtype whose every bit pattern is a value (so it may live in
/// a reused, zero-initialised block); `None` for bool, strings and resources.
pub fn plain_size(dtype: DType) -> Option<usize> {
    match dtype {
        DType::F32 | DType::I32 | DType::U32 => Some(4),
        DType::F64 | DType::I64 | DType::U64 => Some(8),
        DType::F16 | DType::BF16 | DType::I16 | DType::U16 => Some(2),
        DType::I8 | DType::U8 => Some(1),
        _ => None,
    }
}
