//! core benchmarks (not yet written).

fn main() {}
