//! Variables with initial values, TF1 style: `variable_with_init` adds the `VariableV2`, a
//! `Const` initial value and the `Assign` initialiser, and records the initialiser in the
//! graph's `initializers` collection, which [`Builder::initializer`] groups into one op.

use rill_graph::{NodeId, Output, Result, Tensor};

use crate::Builder;

/// The graph collection holding every variable initialiser.
pub const INITIALIZERS: &str = "initializers";

impl Builder {
    /// A `VariableV2` named `name` (within the name scope) of `initial`'s dtype and shape,
    /// with an `Assign` from a constant `initial` registered as its initialiser.
    pub fn variable_with_init(&self, name: &str, initial: Tensor) -> Result<Output> {
        let var = self.variable(name, initial.dtype(), initial.shape())?;
        let value = self
            .op("Const")
            .name(&format!("{name}/initial_value"))
            .attr("dtype", initial.dtype())
            .attr("value", initial)
            .build_output()?;
        let assign = self
            .op("Assign")
            .name(&format!("{name}/Assign"))
            .input(var)
            .input(value)
            .build()?;
        self.graph_mut().add_to_collection(INITIALIZERS, assign);
        Ok(var)
    }

    /// One `NoOp` named `name` that runs every registered variable initialiser.
    pub fn initializer(&self, name: &str) -> Result<NodeId> {
        let inits = self.graph().collection(INITIALIZERS);
        let mut op = self.op("NoOp").name(name);
        for id in inits {
            op = op.control_input(id);
        }
        op.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initialisers_are_collected() {
        let b = Builder::new();
        let w = b
            .variable_with_init("w", Tensor::new(&[2, 2], vec![1.0f32; 4]).unwrap())
            .unwrap();
        b.variable_with_init("b", Tensor::vector(vec![0.0f32; 2]))
            .unwrap();
        assert_eq!(b.shape(w).to_string(), "[2,2]");
        let init = b.initializer("init").unwrap();
        let g = b.graph();
        let names: Vec<&str> = g
            .node(init)
            .control_inputs
            .iter()
            .map(|&c| g.node(c).name.as_str())
            .collect();
        assert_eq!(names, ["w/Assign", "b/Assign"]);
    }
}
