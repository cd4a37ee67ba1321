//! The script runtime under the bindings: the async bridge (cancel + timeout), option decoding and
//! the pretty printer for values.

pub(crate) mod bridge;
pub(crate) mod decode;
pub(crate) mod pretty;
