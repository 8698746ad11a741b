//! Graph simplification passes (one per file), each a [`rill_graph::Pass`] that keeps the
//! step's results identical.
