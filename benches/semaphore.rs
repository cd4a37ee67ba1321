//! semaphore benchmarks (not yet written).

fn main() {}
