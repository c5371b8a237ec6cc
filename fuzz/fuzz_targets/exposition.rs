//! Fuzz target: the text exposition parser (both formats, fast paths against the reference path).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tsdb::exposition::fuzz_parse(data);
});
