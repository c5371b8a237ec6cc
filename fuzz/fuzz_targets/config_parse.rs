//! Decodes and validates arbitrary bytes as a `prometheus.yml` (and as a rule file and a file_sd
//! target file): must never panic, whatever a user or an attacker puts in the file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tsdb::config::fuzz_parse_config(data);
});
