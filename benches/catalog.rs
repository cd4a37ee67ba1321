//! catalog benchmarks (not yet written).

fn main() {}
