//! Session-held state: [`Variable`]s (TF1 `VariableV2` and resource variables alike) in a
//! [`ResourceMgr`] keyed by name. Variables outlive steps; kernels reach them through the
//! [`crate::KernelContext`].
//!
//! Invariants: a variable's value, once set, keeps the dtype the variable was declared with;
//! reading a variable that was never assigned is FailedPrecondition naming it; updates take
//! the write lock, so concurrent updates of one variable never interleave (TensorFlow's
//! `use_locking=true`, always).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use rill_graph::{DType, Error, Result, Shape, Tensor};

/// One mutable tensor held across steps.
#[derive(Debug)]
pub struct Variable {
    name: String,
    dtype: DType,
    /// The declared shape; assignments must be compatible with it when validated.
    shape: Shape,
    value: RwLock<Option<Tensor>>,
}

impl Variable {
    pub fn new(name: &str, dtype: DType, shape: Shape) -> Variable {
        Variable {
            name: name.to_string(),
            dtype,
            shape,
            value: RwLock::new(None),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn declared_shape(&self) -> &Shape {
        &self.shape
    }

    pub fn is_initialized(&self) -> bool {
        self.value.read().expect("variable lock").is_some()
    }

    /// The current value (shares the buffer: a later update copies if the value is still
    /// held elsewhere).
    pub fn read(&self) -> Result<Tensor> {
        self.value
            .read()
            .expect("variable lock")
            .clone()
            .ok_or_else(|| self.uninitialized())
    }

    /// The write lock on the value, for ops that update several variables at once.
    pub fn lock(&self) -> std::sync::RwLockWriteGuard<'_, Option<Tensor>> {
        self.value.write().expect("variable lock")
    }

    /// The error for reading this variable before it is assigned.
    pub fn uninitialized(&self) -> Error {
        Error::failed_precondition(format!(
            "Attempting to use uninitialized value {}",
            self.name
        ))
    }

    /// Replaces the value. With `validate_shape`, the value must fit the declared shape.
    pub fn assign(&self, value: Tensor, validate_shape: bool) -> Result<()> {
        if value.dtype() != self.dtype {
            return Err(Error::invalid_argument(format!(
                "cannot assign a {} value to variable {} of dtype {}",
                value.dtype(),
                self.name,
                self.dtype
            )));
        }
        if validate_shape && !self.shape.is_compatible_with(&value.shape()) {
            return Err(Error::invalid_argument(format!(
                "cannot assign a value of shape {} to variable {} of shape {}",
                value.shape(),
                self.name,
                self.shape
            )));
        }
        // A value from a step's memory-plan arena is copied out: the variable outlives the step.
        *self.value.write().expect("variable lock") = Some(value.detach());
        Ok(())
    }

    /// Updates the value in place under the write lock; `f` gets the current value (its
    /// buffer unshared, so writes through `as_mut_slice` do not copy unless a reader still
    /// holds it).
    pub fn update<R>(&self, f: impl FnOnce(&mut Tensor) -> Result<R>) -> Result<R> {
        let mut guard = self.value.write().expect("variable lock");
        let value = guard.as_mut().ok_or_else(|| self.uninitialized())?;
        f(value)
    }
}

/// The resources of one session, by name.
#[derive(Debug, Default)]
pub struct ResourceMgr {
    variables: Mutex<BTreeMap<String, Arc<Variable>>>,
}

impl ResourceMgr {
    pub fn new() -> ResourceMgr {
        ResourceMgr::default()
    }

    /// The variable named `name`, created (uninitialised) with `dtype` and `shape` if it
    /// does not exist yet; an existing one must have the same dtype.
    pub fn variable(&self, name: &str, dtype: DType, shape: &Shape) -> Result<Arc<Variable>> {
        let mut vars = self.variables.lock().expect("resource lock");
        if let Some(v) = vars.get(name) {
            if v.dtype != dtype {
                return Err(Error::invalid_argument(format!(
                    "variable {name} exists with dtype {}, not {dtype}",
                    v.dtype
                )));
            }
            return Ok(v.clone());
        }
        let v = Arc::new(Variable::new(name, dtype, shape.clone()));
        vars.insert(name.to_string(), v.clone());
        Ok(v)
    }

    /// The variable named `name`, or NotFound.
    pub fn lookup(&self, name: &str) -> Result<Arc<Variable>> {
        self.variables
            .lock()
            .expect("resource lock")
            .get(name)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("resource variable {name} does not exist")))
    }

    /// Every variable, sorted by name (for checkpoints).
    pub fn variables(&self) -> Vec<Arc<Variable>> {
        self.variables
            .lock()
            .expect("resource lock")
            .values()
            .cloned()
            .collect()
    }

    /// Removes a variable (`DestroyResourceOp`); NotFound if absent.
    pub fn remove(&self, name: &str) -> Result<()> {
        self.variables
            .lock()
            .expect("resource lock")
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| Error::not_found(format!("resource variable {name} does not exist")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_hold_values_across_reads_and_updates() {
        let mgr = ResourceMgr::new();
        let v = mgr.variable("w", DType::F32, &Shape::known(&[2])).unwrap();
        let e = v.read().unwrap_err();
        assert_eq!(e.code, rill_graph::Code::FailedPrecondition);
        assert!(e.message.contains("uninitialized value w"));
        v.assign(Tensor::vector(vec![1.0f32, 2.0]), true).unwrap();
        let before = v.read().unwrap();
        v.update(|t| {
            t.as_mut_slice::<f32>()?[0] = 5.0;
            Ok(())
        })
        .unwrap();
        assert_eq!(before.as_slice::<f32>().unwrap(), &[1.0, 2.0]);
        assert_eq!(v.read().unwrap().as_slice::<f32>().unwrap(), &[5.0, 2.0]);
        assert!(v.assign(Tensor::vector(vec![1.0f32]), true).is_err());
        assert!(v.assign(Tensor::vector(vec![1i32, 2]), false).is_err());
        assert!(mgr.variable("w", DType::I32, &Shape::unknown()).is_err());
        assert!(Arc::ptr_eq(&mgr.lookup("w").unwrap(), &v));
        mgr.remove("w").unwrap();
        assert!(mgr.lookup("w").is_err());
    }
}
