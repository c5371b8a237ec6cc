//! Feeds arbitrary bytes to the block tombstones reader (`tsdb::block::tombstones::fuzz_tombstones`): must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tsdb::block::tombstones::fuzz_tombstones(data);
});
