//! Feeds arbitrary bytes to the alert template parser and executor
//! (`tsdb::rules::template::fuzz_template`): parsing and expanding must never panic, and an
//! expansion stays within the executor's depth, step and output limits.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tsdb::rules::template::fuzz_template(data);
});
