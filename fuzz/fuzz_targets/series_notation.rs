//! Reads arbitrary bytes as Prometheus' series notation (`metric{labels} 1+2x3 _ stale`): must
//! never panic, whatever a rule unit-test file puts in its input series.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tsdb::promql::series_notation::fuzz_parse(data);
});
