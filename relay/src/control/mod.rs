//! The control plane: protocol, request handling, the Unix-socket server and the client.

pub mod audit;
pub mod client;
pub mod handler;
pub mod protocol;
pub mod server;

pub use handler::Controller;
