//! stagehand agent: PID 1 (or a container's first process) on the target board.
//!
//! It brings the machine up ([`boot`]), reads its configuration ([`config`]), runs the
//! stage 3 bundle module by module ([`bundle`], [`runner`], [`checkpoint`]), packs the
//! result ([`pack`]) and streams everything to the host over the uplink protocol
//! ([`wire`], [`channel`]), then ends the way it was told ([`pid1`]). [`agent`] ties the
//! steps together; the `/init` binary is a thin shell over it.

pub mod agent;
pub mod boot;
pub mod bundle;
pub mod channel;
pub mod checkpoint;
pub mod config;
pub mod events;
pub mod kmod;
pub mod netcfg;
pub mod pack;
pub mod pid1;
pub mod runner;
pub mod sys;
pub mod wire;
