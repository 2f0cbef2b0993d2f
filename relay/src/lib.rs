//! MCR relay library: the parts of `mcrd` and `mcrctl`.

pub mod stats;
