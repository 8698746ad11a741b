//! `BiasAdd` / `BiasAddV1` (add a per-channel vector; channels last in NHWC, dim 1 in NCHW,
//! for any rank >= 2) and `BiasAddGrad` (sum over every dim but the channel dim).
//!
//! Invariants: the add reuses the math broadcasting driver (in place when the kernel holds
//! the value's buffer alone, else into the output the memory plan gives it through
//! `alloc_output`; integers wrap; f16/bf16 through f32); the gradient reuses `Sum`.

use rill_graph::{Error, Result, Tensor};

use super::window::Format;
use crate::cpu::math::binary::{apply_in, op::AddV2};
use crate::cpu::math::reduce::sum_over;
use crate::cpu::math::util::take;
use crate::{Kernel, KernelContext, KernelRegistry, MemoryTraits};

fn channel_dim(t: &Tensor, format: Format) -> Result<usize> {
    if t.rank() < 2 {
        return Err(Error::invalid_argument(format!(
            "Input tensor must be at least 2D: {}",
            t.shape()
        )));
    }
    Ok(match format {
        Format::Nhwc => t.rank() - 1,
        Format::Nchw => 1,
    })
}

struct BiasAdd {
    format: Format,
}

impl Kernel for BiasAdd {
    fn compute(&self, cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let [value, bias] = take("BiasAdd", inputs)?;
        let cd = channel_dim(&value, self.format)?;
        if bias.rank() != 1 {
            return Err(Error::invalid_argument(format!(
                "Biases must be 1D: {}",
                bias.shape()
            )));
        }
        if bias.dims()[0] != value.dims()[cd] {
            return Err(Error::invalid_argument(format!(
                "Must provide as many biases as the channel dimension of the input tensor: {} vs. {}",
                bias.shape(),
                value.shape()
            )));
        }
        let mut dims = vec![1; value.rank() - cd];
        dims[0] = bias.dims()[0];
        let bias = bias.reshape(&dims)?;
        Ok(vec![apply_in::<AddV2>(Some(cx), value, bias)?])
    }

    fn memory_traits(&self) -> MemoryTraits {
        MemoryTraits::ELEMENTWISE
    }
}

struct BiasAddGrad {
    format: Format,
}

impl Kernel for BiasAddGrad {
    fn compute(&self, _cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let [dy] = take("BiasAddGrad", inputs)?;
        let cd = channel_dim(&dy, self.format)?;
        let axes: Vec<i64> = (0..dy.rank() as i64).filter(|&a| a != cd as i64).collect();
        Ok(vec![sum_over(dy, &axes)?])
    }
}

pub(crate) fn register(r: &mut KernelRegistry) {
    r.cpu("BiasAdd", |n| {
        Ok(Box::new(BiasAdd {
            format: Format::parse(n)?,
        }))
    });
    r.cpu("BiasAddV1", |_| {
        Ok(Box::new(BiasAdd {
            format: Format::Nhwc,
        }))
    });
    r.cpu("BiasAddGrad", |n| {
        Ok(Box::new(BiasAddGrad {
            format: Format::parse(n)?,
        }))
    });
}

#[cfg(test)]
mod tests {
    use crate::cpu::math::test_util::{assert_close, f32s, run, run1};
    use rill_graph::AttrValue;

    #[test]
    fn bias_add_both_formats() {
        let x = f32s(&[2, 2, 3], &[0.0; 12]);
        let b = f32s(&[3], &[1.0, 2.0, 3.0]);
        let out = run1("BiasAdd", &[], vec![x.clone(), b.clone()]);
        assert_close(
            &out,
            &[2, 2, 3],
            &[1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0],
            0.0,
        );
        let nchw = [("data_format", AttrValue::from("NCHW"))];
        let x = f32s(&[1, 3, 2], &[0.0; 6]);
        let out = run1("BiasAdd", &nchw, vec![x, b.clone()]);
        assert_close(&out, &[1, 3, 2], &[1.0, 1.0, 2.0, 2.0, 3.0, 3.0], 0.0);
        assert!(run("BiasAdd", &[], vec![f32s(&[3], &[0.0; 3]), b.clone()]).is_err());
        assert!(run("BiasAdd", &[], vec![f32s(&[2, 2], &[0.0; 4]), b]).is_err());
    }

    #[test]
    fn bias_add_grad_sums_all_but_channels() {
        let dy = f32s(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_close(
            &run1("BiasAddGrad", &[], vec![dy.clone()]),
            &[3],
            &[5.0, 7.0, 9.0],
            0.0,
        );
        let nchw = [("data_format", AttrValue::from("NCHW"))];
        let dy = f32s(&[2, 2, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        assert_close(
            &run1("BiasAddGrad", &nchw, vec![dy]),
            &[2],
            &[14.0, 22.0],
            0.0,
        );
    }
}
