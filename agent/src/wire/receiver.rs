//! TODO(protocol): see wire/mod.rs
