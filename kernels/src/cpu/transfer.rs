//! Kernels of `_Send`/`_Recv` (and the `_HostSend`/`_HostRecv` forms, which are the same
//! on a CPU): the two ends of an edge the partitioner cut between devices, meeting in the
//! step's [`Rendezvous`](crate::rendezvous::Rendezvous) under the key their attrs name
//! (`send_device;incarnation;recv_device;tensor_name;0:0`).
//!
//! Invariants: a `_Send` never blocks and hands over a tensor that owns its buffer (an
//! arena tensor is copied out first, since the sender's arena is reused once its partition
//! finishes); a `_Recv` never holds a thread while it waits (it is asynchronous), and
//! checks that what arrives has its declared dtype.

use std::sync::Arc;

use rill_graph::{Code, DType, Error, Node, Result, Tensor};

use crate::cpu::math::util::{attr_int, attr_str, attr_type};
use crate::rendezvous::{FrameAndIter, Rendezvous, RendezvousKey};
use crate::{AsyncDone, Kernel, KernelContext, KernelRegistry};

/// The rendezvous key and dtype a `_Send`/`_Recv` node names.
fn endpoint(node: &Node, type_attr: &str) -> Result<(RendezvousKey, DType)> {
    let dtype = attr_type(node, type_attr, DType::F32)?;
    let name = attr_str(node, "tensor_name", "")?;
    let send_device = attr_str(node, "send_device", "")?;
    let recv_device = attr_str(node, "recv_device", "")?;
    if name.is_empty() || send_device.is_empty() || recv_device.is_empty() {
        return Err(Error::invalid_argument(
            "needs non-empty 'tensor_name', 'send_device' and 'recv_device' attrs",
        ));
    }
    let incarnation = attr_int(node, "send_device_incarnation", 0)? as u64;
    let key = RendezvousKey::create(
        &send_device,
        incarnation,
        &recv_device,
        &name,
        FrameAndIter::default(),
    );
    Ok((key, dtype))
}

fn rendezvous<'a>(cx: &KernelContext<'a>, op: &str) -> Result<&'a Arc<dyn Rendezvous>> {
    cx.rendezvous.ok_or_else(|| {
        Error::failed_precondition(format!(
            "{op} runs only in a step partitioned across devices (it has no rendezvous)"
        ))
    })
}

struct Send {
    key: RendezvousKey,
    dtype: DType,
}

impl Kernel for Send {
    fn compute(&self, cx: &KernelContext, mut inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let value = inputs
            .pop()
            .ok_or_else(|| Error::invalid_argument("_Send takes one input"))?;
        if value.dtype() != self.dtype {
            return Err(Error::invalid_argument(format!(
                "_Send of '{}' declares {} but got a {} tensor",
                self.key.tensor_name,
                self.dtype,
                value.dtype()
            )));
        }
        rendezvous(cx, "_Send")?.send(&self.key, value.detach(), false)?;
        Ok(vec![])
    }
}

struct Recv {
    key: RendezvousKey,
    dtype: DType,
}

impl Recv {
    fn check(key: &RendezvousKey, dtype: DType, got: Result<(Tensor, bool)>) -> Result<Tensor> {
        let (value, is_dead) = got?;
        if is_dead {
            return Err(Error::new(
                Code::Unimplemented,
                format!(
                    "'{}' arrived dead (TF1 control flow across devices)",
                    key.tensor_name
                ),
            ));
        }
        if value.dtype() != dtype {
            return Err(Error::invalid_argument(format!(
                "_Recv of '{}' expects {dtype} but {} arrived",
                key.tensor_name,
                value.dtype()
            )));
        }
        Ok(value)
    }
}

impl Kernel for Recv {
    fn compute(&self, cx: &KernelContext, _: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let got = rendezvous(cx, "_Recv")?.recv(&self.key, None);
        Ok(vec![Recv::check(&self.key, self.dtype, got)?])
    }

    fn is_async(&self) -> bool {
        true
    }

    fn compute_async(&self, cx: &KernelContext, _: Vec<Tensor>, done: AsyncDone) {
        let rendezvous = match rendezvous(cx, "_Recv") {
            Ok(r) => r,
            Err(e) => return done(Err(e)),
        };
        let (key, dtype) = (self.key.clone(), self.dtype);
        rendezvous.recv_async(
            &self.key,
            Box::new(move |got| done(Recv::check(&key, dtype, got).map(|t| vec![t]))),
        );
    }
}

fn send(node: &Node) -> Result<Box<dyn Kernel>> {
    let (key, dtype) = endpoint(node, "T")?;
    Ok(Box::new(Send { key, dtype }))
}

fn recv(node: &Node) -> Result<Box<dyn Kernel>> {
    let (key, dtype) = endpoint(node, "tensor_type")?;
    Ok(Box::new(Recv { key, dtype }))
}

pub(crate) fn register(r: &mut KernelRegistry) {
    r.cpu("_Send", send);
    r.cpu("_HostSend", send);
    r.cpu("_Recv", recv);
    r.cpu("_HostRecv", recv);
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use rill_graph::AttrValue;

    use super::*;
    use crate::cpu::math::test_util::node;
    use crate::rendezvous::LocalRendezvous;
    use crate::{DeviceType, ResourceMgr};

    fn attrs(type_attr: &str) -> Vec<(&str, AttrValue)> {
        vec![
            (type_attr, AttrValue::Type(DType::F32)),
            ("tensor_name", "edge_3_x".into()),
            (
                "send_device",
                "/job:localhost/replica:0/task:0/device:CPU:0".into(),
            ),
            ("send_device_incarnation", AttrValue::Int(7)),
            (
                "recv_device",
                "/job:localhost/replica:0/task:0/device:CPU:1".into(),
            ),
        ]
    }

    fn kernel(op: &str, type_attr: &str, inputs: &[Tensor]) -> Box<dyn Kernel> {
        let n = node(op, &attrs(type_attr), inputs);
        crate::registry().create(&n, DeviceType::Cpu).unwrap()
    }

    #[test]
    fn a_send_meets_its_recv_whichever_comes_first() {
        let x = Tensor::new(&[2], vec![1.0f32, 2.0]).unwrap();
        let resources = ResourceMgr::new();
        for recv_first in [false, true] {
            let rv: Arc<dyn Rendezvous> = Arc::new(LocalRendezvous::new());
            let mut cx = KernelContext::new("n", &resources);
            cx.rendezvous = Some(&rv);
            let got = Arc::new(Mutex::new(None));
            let recv = kernel("_Recv", "tensor_type", &[]);
            assert!(recv.is_async());
            let sink = got.clone();
            let receive = || {
                recv.compute_async(
                    &cx,
                    vec![],
                    Box::new(move |r| *sink.lock().unwrap() = Some(r)),
                )
            };
            let send = kernel("_Send", "T", std::slice::from_ref(&x));
            if recv_first {
                receive();
                assert!(got.lock().unwrap().is_none(), "recv must wait for the send");
                send.compute(&cx, vec![x.clone()]).unwrap();
            } else {
                send.compute(&cx, vec![x.clone()]).unwrap();
                receive();
            }
            let out = got.lock().unwrap().take().unwrap().unwrap();
            assert_eq!(out[0].as_slice::<f32>().unwrap(), &[1.0, 2.0]);
        }
    }

    #[test]
    fn abort_fails_a_waiting_recv_and_missing_rendezvous_is_an_error() {
        let resources = ResourceMgr::new();
        let rv: Arc<dyn Rendezvous> = Arc::new(LocalRendezvous::new());
        let mut cx = KernelContext::new("n", &resources);
        cx.rendezvous = Some(&rv);
        let got = Arc::new(Mutex::new(None));
        let sink = got.clone();
        kernel("_Recv", "tensor_type", &[]).compute_async(
            &cx,
            vec![],
            Box::new(move |r| *sink.lock().unwrap() = Some(r)),
        );
        rv.abort(Error::internal("device 1 failed"));
        let err = got.lock().unwrap().take().unwrap().unwrap_err();
        assert!(err.message.contains("device 1 failed"), "{err}");

        let bare = KernelContext::new("n", &resources);
        let x = Tensor::scalar(1.0f32);
        let err = kernel("_Send", "T", std::slice::from_ref(&x))
            .compute(&bare, vec![x])
            .unwrap_err();
        assert_eq!(err.code, Code::FailedPrecondition);
    }

    #[test]
    fn a_recv_rejects_a_tensor_of_another_dtype() {
        let resources = ResourceMgr::new();
        let rv: Arc<dyn Rendezvous> = Arc::new(LocalRendezvous::new());
        let mut cx = KernelContext::new("n", &resources);
        cx.rendezvous = Some(&rv);
        let (key, _) = endpoint(&node("_Recv", &attrs("tensor_type"), &[]), "tensor_type").unwrap();
        rv.send(&key, Tensor::scalar(1i32), false).unwrap();
        let err = kernel("_Recv", "tensor_type", &[])
            .compute(&cx, vec![])
            .unwrap_err();
        assert!(err.message.contains("expects float"), "{err}");
    }
}
