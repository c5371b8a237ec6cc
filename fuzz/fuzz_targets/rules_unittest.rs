//! Decodes arbitrary bytes as a `promtool test rules` file, with its input series and expected
//! labels: must never panic, whatever the test file holds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tsdb::rules::unittest::fuzz_parse(data);
});
