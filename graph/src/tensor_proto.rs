//! Conversion between [`Tensor`] and TensorFlow's `TensorProto`: packed `tensor_content`
//! (little-endian) and the repeated `*_val` fields, with TensorFlow's rule that a short value
//! list is padded with its last value (so one value fills the whole shape).
//!
//! Invariant: no input makes this allocate more than the proto's own declared element count,
//! which is checked for overflow and allocated fallibly first.

use half::{bf16, f16};

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::shape::Shape;
use crate::tensor::{element_count, try_filled, Buffer, ResourceHandle, Tensor};
use rill_proto::TensorProto;

impl Tensor {
    /// Decodes a `TensorProto`; InvalidArgument for inconsistent or unknown-shaped protos.
    pub fn from_proto(proto: &TensorProto) -> Result<Tensor> {
        let (dtype, is_ref) = DType::from_proto(proto.dtype)?;
        if is_ref {
            return Err(Error::invalid_argument(
                "a TensorProto cannot have a reference dtype",
            ));
        }
        let shape = Shape::from_proto(proto.tensor_shape.as_ref().unwrap_or(&Default::default()))?;
        let dims = shape.to_known().ok_or_else(|| {
            Error::invalid_argument(format!(
                "a TensorProto needs a fully known shape, got {shape}"
            ))
        })?;
        let n = element_count(&dims)?;
        let buffer = if !proto.tensor_content.is_empty() {
            from_content(dtype, n, &proto.tensor_content)?
        } else {
            from_values(dtype, n, proto)?
        };
        Tensor::from_buffer(&dims, buffer)
    }

    /// Encodes as TensorFlow's `make_tensor_proto` does for graph constants: a single value
    /// in the typed `*_val` field, several values as packed `tensor_content`, strings in
    /// `string_val`.
    pub fn to_proto(&self) -> TensorProto {
        if self.arena_slice().is_some() {
            return self.clone().detach().to_proto();
        }
        let mut proto = TensorProto {
            dtype: self.dtype().to_proto() as i32,
            tensor_shape: Some(self.shape().to_proto()),
            ..Default::default()
        };
        if self.num_elements() == 1 {
            match self.buffer() {
                Buffer::F32(v) => proto.float_val = v.clone(),
                Buffer::F64(v) => proto.double_val = v.clone(),
                Buffer::F16(v) => proto.half_val = v.iter().map(|x| x.to_bits() as i32).collect(),
                Buffer::BF16(v) => proto.half_val = v.iter().map(|x| x.to_bits() as i32).collect(),
                Buffer::I8(v) => proto.int_val = v.iter().map(|&x| x as i32).collect(),
                Buffer::I16(v) => proto.int_val = v.iter().map(|&x| x as i32).collect(),
                Buffer::I32(v) => proto.int_val = v.clone(),
                Buffer::U8(v) => proto.int_val = v.iter().map(|&x| x as i32).collect(),
                Buffer::U16(v) => proto.int_val = v.iter().map(|&x| x as i32).collect(),
                Buffer::I64(v) => proto.int64_val = v.clone(),
                Buffer::U32(v) => proto.uint32_val = v.clone(),
                Buffer::U64(v) => proto.uint64_val = v.clone(),
                Buffer::Bool(v) => proto.bool_val = v.clone(),
                Buffer::String(v) => proto.string_val = v.clone(),
                Buffer::Resource(v) => {
                    proto.resource_handle_val = v.iter().map(handle_to_proto).collect()
                }
                Buffer::Arena(_) => unreachable!("arena tensors are copied out above"),
            }
            return proto;
        }
        match (self.raw_bytes(), self.buffer()) {
            (Some(bytes), _) => proto.tensor_content = bytes,
            (None, Buffer::String(v)) => proto.string_val = v.clone(),
            (None, Buffer::Resource(v)) => {
                proto.resource_handle_val = v.iter().map(handle_to_proto).collect()
            }
            (None, _) => {}
        }
        proto
    }

    /// The values as packed little-endian bytes (TensorFlow's `tensor_content` layout;
    /// bool as one byte); `None` for strings and resource handles.
    pub fn raw_bytes(&self) -> Option<Vec<u8>> {
        if self.arena_slice().is_some() {
            return self.clone().detach().raw_bytes();
        }
        Some(match self.buffer() {
            Buffer::F32(v) => bytemuck::cast_slice(v).to_vec(),
            Buffer::F64(v) => bytemuck::cast_slice(v).to_vec(),
            Buffer::F16(v) => bytemuck::cast_slice(v).to_vec(),
            Buffer::BF16(v) => bytemuck::cast_slice(v).to_vec(),
            Buffer::I8(v) => bytemuck::cast_slice(v).to_vec(),
            Buffer::I16(v) => bytemuck::cast_slice(v).to_vec(),
            Buffer::I32(v) => bytemuck::cast_slice(v).to_vec(),
            Buffer::I64(v) => bytemuck::cast_slice(v).to_vec(),
            Buffer::U8(v) => v.clone(),
            Buffer::U16(v) => bytemuck::cast_slice(v).to_vec(),
            Buffer::U32(v) => bytemuck::cast_slice(v).to_vec(),
            Buffer::U64(v) => bytemuck::cast_slice(v).to_vec(),
            Buffer::Bool(v) => v.iter().map(|&b| b as u8).collect(),
            Buffer::String(_) | Buffer::Resource(_) => return None,
            Buffer::Arena(_) => unreachable!("arena tensors are copied out above"),
        })
    }
}

fn from_content(dtype: DType, n: usize, bytes: &[u8]) -> Result<Buffer> {
    let size = dtype.size().ok_or_else(|| {
        Error::invalid_argument(format!("tensor_content cannot encode dtype {dtype}"))
    })?;
    if n.checked_mul(size) != Some(bytes.len()) {
        return Err(Error::invalid_argument(format!(
            "tensor_content has {} bytes, but {n} elements of {dtype} need {}",
            bytes.len(),
            n.saturating_mul(size)
        )));
    }
    fn pod<T: bytemuck::Pod>(bytes: &[u8]) -> Vec<T> {
        bytemuck::pod_collect_to_vec(bytes)
    }
    Ok(match dtype {
        DType::F32 => Buffer::F32(pod(bytes)),
        DType::F64 => Buffer::F64(pod(bytes)),
        DType::F16 => Buffer::F16(pod(bytes)),
        DType::BF16 => Buffer::BF16(pod(bytes)),
        DType::I8 => Buffer::I8(pod(bytes)),
        DType::I16 => Buffer::I16(pod(bytes)),
        DType::I32 => Buffer::I32(pod(bytes)),
        DType::I64 => Buffer::I64(pod(bytes)),
        DType::U8 => Buffer::U8(bytes.to_vec()),
        DType::U16 => Buffer::U16(pod(bytes)),
        DType::U32 => Buffer::U32(pod(bytes)),
        DType::U64 => Buffer::U64(pod(bytes)),
        DType::Bool => Buffer::Bool(bytes.iter().map(|&b| b != 0).collect()),
        other => {
            return Err(Error::unimplemented(format!(
                "dtype {other} in tensor_content"
            )))
        }
    })
}

/// `n` values from `vals`: all of them, or padded with the last one, or zeros when empty.
fn fill<S: Copy, T: Clone + Default>(
    n: usize,
    vals: &[S],
    convert: impl Fn(S) -> T,
    field: &str,
) -> Result<Vec<T>> {
    if vals.len() > n {
        return Err(Error::invalid_argument(format!(
            "{field} has {} values for a tensor of {n} elements",
            vals.len()
        )));
    }
    let last = vals.last().map(|&v| convert(v)).unwrap_or_default();
    let mut out = try_filled(n, last)?;
    for (o, &v) in out.iter_mut().zip(vals) {
        *o = convert(v);
    }
    Ok(out)
}

fn from_values(dtype: DType, n: usize, p: &TensorProto) -> Result<Buffer> {
    Ok(match dtype {
        DType::F32 => Buffer::F32(fill(n, &p.float_val, |v| v, "float_val")?),
        DType::F64 => Buffer::F64(fill(n, &p.double_val, |v| v, "double_val")?),
        DType::F16 => Buffer::F16(fill(
            n,
            &p.half_val,
            |v| f16::from_bits(v as u16),
            "half_val",
        )?),
        DType::BF16 => Buffer::BF16(fill(
            n,
            &p.half_val,
            |v| bf16::from_bits(v as u16),
            "half_val",
        )?),
        DType::I8 => Buffer::I8(fill(n, &p.int_val, |v| v as i8, "int_val")?),
        DType::I16 => Buffer::I16(fill(n, &p.int_val, |v| v as i16, "int_val")?),
        DType::I32 => Buffer::I32(fill(n, &p.int_val, |v| v, "int_val")?),
        DType::U8 => Buffer::U8(fill(n, &p.int_val, |v| v as u8, "int_val")?),
        DType::U16 => Buffer::U16(fill(n, &p.int_val, |v| v as u16, "int_val")?),
        DType::I64 => Buffer::I64(fill(n, &p.int64_val, |v| v, "int64_val")?),
        DType::U32 => Buffer::U32(fill(n, &p.uint32_val, |v| v, "uint32_val")?),
        DType::U64 => Buffer::U64(fill(n, &p.uint64_val, |v| v, "uint64_val")?),
        DType::Bool => Buffer::Bool(fill(n, &p.bool_val, |v| v, "bool_val")?),
        DType::String => {
            if p.string_val.len() > n {
                return Err(Error::invalid_argument(format!(
                    "string_val has {} values for a tensor of {n} elements",
                    p.string_val.len()
                )));
            }
            let mut out = try_filled(n, p.string_val.last().cloned().unwrap_or_default())?;
            out[..p.string_val.len()].clone_from_slice(&p.string_val);
            Buffer::String(out)
        }
        DType::Resource => {
            let handles: Vec<ResourceHandle> = p
                .resource_handle_val
                .iter()
                .map(|h| ResourceHandle {
                    container: h.container.clone(),
                    name: h.name.clone(),
                })
                .collect();
            if handles.len() != n {
                return Err(Error::invalid_argument(format!(
                    "resource_handle_val has {} handles for a tensor of {n} elements",
                    handles.len()
                )));
            }
            Buffer::Resource(handles)
        }
        other => {
            return Err(Error::unimplemented(format!(
                "TensorProto values of dtype {other} are not supported"
            )))
        }
    })
}

fn handle_to_proto(h: &ResourceHandle) -> rill_proto::ResourceHandleProto {
    rill_proto::ResourceHandleProto {
        container: h.container.clone(),
        name: h.name.clone(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_proto::TensorShapeProto;

    fn shape(dims: &[i64]) -> Option<TensorShapeProto> {
        Some(Shape::from_dims(dims.iter().map(|&d| crate::Dim::from_i64(d))).to_proto())
    }

    #[test]
    fn round_trips_every_value_dtype() {
        let tensors = vec![
            Tensor::new(&[2, 2], vec![1.5f32, -2.0, 0.0, 3.25]).unwrap(),
            Tensor::new(&[3], vec![1.5f64, -2.0, 1e300]).unwrap(),
            Tensor::new(&[2], vec![f16::from_f32(1.5), f16::from_f32(-3.0)]).unwrap(),
            Tensor::new(&[1], vec![bf16::from_f32(2.5)]).unwrap(),
            Tensor::new(&[2], vec![i8::MIN, i8::MAX]).unwrap(),
            Tensor::new(&[2], vec![i32::MIN, 7]).unwrap(),
            Tensor::new(&[2], vec![i64::MAX, -1]).unwrap(),
            Tensor::new(&[3], vec![0u8, 128, 255]).unwrap(),
            Tensor::new(&[2], vec![true, false]).unwrap(),
            Tensor::new(&[2], vec![b"a".to_vec(), vec![0xff, 0]]).unwrap(),
            Tensor::new(&[0, 3], Vec::<f32>::new()).unwrap(),
            Tensor::scalar(5u64),
            Tensor::scalar(ResourceHandle {
                container: "c".into(),
                name: "v".into(),
            }),
            Tensor::new(
                &[2],
                vec![ResourceHandle::default(), ResourceHandle::default()],
            )
            .unwrap(),
        ];
        for t in tensors {
            assert_eq!(Tensor::from_proto(&t.to_proto()).unwrap(), t);
        }
    }

    #[test]
    fn single_value_fills_the_shape() {
        let p = TensorProto {
            dtype: DType::F32.to_proto() as i32,
            tensor_shape: shape(&[2, 3]),
            float_val: vec![0.5],
            ..Default::default()
        };
        let t = Tensor::from_proto(&p).unwrap();
        assert_eq!(t.as_slice::<f32>().unwrap(), &[0.5; 6]);
        let p = TensorProto {
            dtype: DType::I32.to_proto() as i32,
            tensor_shape: shape(&[4]),
            int_val: vec![1, 2],
            ..Default::default()
        };
        assert_eq!(
            Tensor::from_proto(&p).unwrap().as_slice::<i32>().unwrap(),
            &[1, 2, 2, 2]
        );
        let p = TensorProto {
            dtype: DType::I64.to_proto() as i32,
            tensor_shape: shape(&[3]),
            ..Default::default()
        };
        assert_eq!(
            Tensor::from_proto(&p).unwrap().as_slice::<i64>().unwrap(),
            &[0, 0, 0]
        );
    }

    #[test]
    fn inconsistent_protos_are_invalid_argument() {
        let base = TensorProto {
            dtype: DType::F32.to_proto() as i32,
            tensor_shape: shape(&[2]),
            ..Default::default()
        };
        let cases = [
            TensorProto {
                tensor_content: vec![0; 7],
                ..base.clone()
            },
            TensorProto {
                float_val: vec![1.0; 3],
                ..base.clone()
            },
            TensorProto {
                tensor_shape: shape(&[-1, 2]),
                ..base.clone()
            },
            TensorProto {
                dtype: 101,
                ..base.clone()
            },
            TensorProto {
                dtype: 0,
                ..base.clone()
            },
        ];
        for p in cases {
            let e = Tensor::from_proto(&p).unwrap_err();
            assert_eq!(e.code, crate::Code::InvalidArgument, "{e}");
        }
        // A single value broadcast to an absurd shape fails cleanly.
        let huge = TensorProto {
            tensor_shape: shape(&[1 << 40, 1 << 30]),
            float_val: vec![1.0],
            ..base
        };
        assert!(Tensor::from_proto(&huge).is_err());
    }
}
