//! Feeds arbitrary bytes to the archive block decoder (`tsdb::block::archive::fuzz_archive`):
//! must never panic, and allocates within the decoder's limits.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tsdb::block::archive::fuzz_archive(data);
});
