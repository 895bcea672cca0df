//! stagehand agent: PID 1 (or a container's first process) on the target board.
//!
//! It brings the machine up (`boot`), reads its configuration (`config`), runs the stage 3
//! bundle module by module (`bundle`, `runner`, `checkpoint`), packs the result (`pack`)
//! and streams everything to the host over the uplink (`channel` and the contract crate's
//! wire), then ends the way it was told (`pid1`). `agent` ties the steps together; the
//! `/init` binary is a thin shell over it.
//!
//! This crate has no library API. What the host and the agent agree on lives in
//! `stagehand-proto`; the modules below are public only so the agent's own integration
//! tests, namespace harness and the packing benchmark can reach them.

#[doc(hidden)]
pub mod agent;
#[doc(hidden)]
pub mod boot;
#[doc(hidden)]
pub mod bundle;
#[doc(hidden)]
pub mod channel;
#[doc(hidden)]
pub mod checkpoint;
#[doc(hidden)]
pub mod config;
#[doc(hidden)]
pub mod dhcp;
#[doc(hidden)]
pub mod kmod;
#[doc(hidden)]
pub mod logger;
#[doc(hidden)]
pub mod netcfg;
#[doc(hidden)]
pub mod pack;
#[doc(hidden)]
pub mod pid1;
#[doc(hidden)]
pub mod rootfs;
#[doc(hidden)]
pub mod runner;
#[doc(hidden)]
pub mod sys;

/// The contract, as the agent's modules name it.
pub use stagehand_proto::{events, wire};
