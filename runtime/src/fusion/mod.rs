//! Fusion passes: declared patterns that rewrite groups of nodes into one fused node.
