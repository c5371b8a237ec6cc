//! Feeds arbitrary bytes to the HTTP layer's parsers of untrusted input
//! (`tsdb::server::web::fuzz_web_input`: web-config YAML, basic-auth header, `match[]` selectors,
//! time parameters, federation value formatting): must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tsdb::server::web::fuzz_web_input(data);
});
