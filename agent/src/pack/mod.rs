//! TODO
pub mod gzip;
