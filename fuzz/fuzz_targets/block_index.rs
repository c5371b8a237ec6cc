//! Feeds arbitrary bytes to the block index reader (`tsdb::block::index::fuzz_index`): must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tsdb::block::index::fuzz_index(data);
});
