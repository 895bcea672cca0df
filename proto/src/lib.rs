//! The contract between `stagehand` (the host tool) and its agent: everything both sides
//! must agree on, in one place, so neither side writes its own copy of the other's format.
//!
//! - [`wire`]: frames, COBS, authentication, the sender and receiver state machines, the
//!   agent's uplink thread; the simulated line behind the `linesim` feature.
//! - [`events`]: the JSON records of the events stream.
//! - [`channel`]: the `channel` setting's syntax (`serial:`, `console`, `tcp:`, `file:`).
//! - [`config`]: the agent's configuration schema, its validator and its loader.
//! - [`ip`]: the kernel's `ip=` syntax.
//! - [`paths`]: where things are inside an image.
//! - [`logs`]: how module logs are named.
//! - [`kmod`]: the kernel's `modules.dep` index.
//!
//! No I/O beyond reading files it is handed and the uplink's transport; no dependency on
//! either program.

pub mod channel;
pub mod config;
pub mod events;
pub mod ip;
pub mod kmod;
pub mod logs;
pub mod paths;
pub mod wire;

/// Version of this contract, sent by the agent in its hello (`Hello::contract`). It goes
/// up when a change needs both sides to know of it; adding an event field with a default
/// does not. A host meeting an agent of a newer contract says so and goes on with what it
/// understands.
pub const CONTRACT_VERSION: u32 = 1;
