//! tsdb: an embedded time-series database in Prometheus' on-disk format.
pub mod chunk;
pub mod exposition;
pub mod head;
pub mod index;
pub mod labels;
pub mod wal;
