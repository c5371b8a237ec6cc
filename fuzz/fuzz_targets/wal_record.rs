//! Fuzzes the WAL record decoders (series, samples, tombstones) on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tsdb::wal::record::fuzz_decode_record(data);
});
