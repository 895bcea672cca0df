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
//! - [`root`]: the root a netbooted agent mounts and switches to.
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
pub mod root;
pub mod wire;

/// Version of this contract, sent by the agent in its hello (`Hello::contract`). It goes
/// up when a change needs both sides to know of it; adding an event field with a default
/// does not. A host meeting an agent of a newer contract says so and goes on with what it
/// understands.
pub const CONTRACT_VERSION: u32 = 1;

/// What a host of this contract says to an agent announcing `agent_contract` in its hello,
/// or `None` when they match. Older agents (0: before the field existed, or a lower
/// number) and newer ones are both collected; the message says which side to update.
pub fn contract_mismatch(agent_contract: u32) -> Option<String> {
    use std::cmp::Ordering::*;
    match agent_contract.cmp(&CONTRACT_VERSION) {
        Equal => None,
        Less => Some(format!(
            "the agent speaks contract {agent_contract}, this stagehand {CONTRACT_VERSION}: collecting what both know; rebuild the image with this stagehand to get the rest"
        )),
        Greater => Some(format!(
            "the agent speaks contract {agent_contract}, newer than this stagehand's {CONTRACT_VERSION}: collecting what this host understands; update stagehand on the host"
        )),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_contract_mismatch_names_the_side_to_update() {
        assert_eq!(super::contract_mismatch(super::CONTRACT_VERSION), None);
        assert!(super::contract_mismatch(0).unwrap().contains("rebuild the image"));
        assert!(super::contract_mismatch(super::CONTRACT_VERSION + 1)
            .unwrap()
            .contains("update stagehand on the host"));
    }
}
