//! Decodes arbitrary bytes as an XOR chunk (and resumes appending where it decodes): must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tsdb::chunk::fuzz_decode(data);
});
