//! Feeds arbitrary bytes to the head chunk file decoder (`tsdb::head::chunks_disk::fuzz_head_chunks`):
//! must never panic, and every chunk it decodes must re-encode and decode to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tsdb::head::chunks_disk::fuzz_head_chunks(data);
});
