//! Fuzz target: PromQL queries (parse and evaluate, instant and range) over a small database.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tsdb::promql::fuzz_query(data);
});
