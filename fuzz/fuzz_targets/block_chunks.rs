//! Feeds arbitrary bytes to the block chunks reader (`tsdb::block::chunks::fuzz_segment`): must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tsdb::block::chunks::fuzz_segment(data);
});
