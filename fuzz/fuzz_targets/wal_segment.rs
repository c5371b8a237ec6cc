//! Fuzzes the WAL segment reader (fragments, padding, sequencing, decompression) and the
//! recovery scan on arbitrary segment bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tsdb::wal::fuzz_read_segment(data);
});
