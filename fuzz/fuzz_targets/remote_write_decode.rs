//! Remote-write request bodies (snappy + protobuf `WriteRequest`): untrusted bytes from any
//! client of `/api/v1/write`. Decoding must never panic; what decodes must re-encode and decode
//! to the same request.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tsdb::server::remote::fuzz_decode_write_request(data);
});
