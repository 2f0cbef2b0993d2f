//! The command lines of `mcrd` and `mcrctl`, as clap definitions.
//!
//! They live in the library (not in `src/bin/`) so that the man pages and shell completions
//! are generated from the very definitions the binaries parse with (`analyzer`'s `mcr-docs`
//! example writes them), and so cannot drift from the flags.

pub mod mcrctl;
pub mod mcrd;
