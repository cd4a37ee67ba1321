//! ssh benchmarks (not yet written).

fn main() {}
