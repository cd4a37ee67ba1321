//! The script runtime under the bindings: the async bridge (cancel + timeout), option decoding and
//! the pretty printer for values.

pub mod bridge;
pub mod decode;
pub mod pretty;
