//! Links that carry the uplink protocol: implementations of [`crate::wire::Transport`].
//!
//! The agent only ever connects out or writes; it never listens on the network.

pub mod spec;

pub use spec::{ChannelSpec, Flow};
