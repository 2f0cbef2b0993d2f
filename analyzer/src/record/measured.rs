//! A counter that was either measured or could not be measured on this machine.
//!
//! "unavailable" is not zero: a zero would claim the event never happened. A counter that was not
//! collected at all is simply absent from its map, which is a third state again.
//!
//! The type is the producers' (the relay's contract defines it, trafficgen's records use it), so
//! that the spelling of "unavailable" has one home.

pub use relay::stats::report::{Measured, UNAVAILABLE};
