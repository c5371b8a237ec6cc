//! Remote-write 1.0 messages (`prompb/remote.proto` and `prompb/types.proto` of Prometheus 2.42)
//! and their wire form: protobuf, then snappy's block format (not the framed stream), as the
//! remote-write spec ("Protocol") requires.
//!
//! The structs are written by hand with `prost` derives (no `protoc`, no build script); field
//! numbers are the `.proto` files'. Native histograms (`TimeSeries.histograms`) are decoded only
//! as far as their timestamp: the storage has no histogram samples, so the receiver refuses a
//! request that carries any instead of dropping them silently.
//!
//! Besides the whole-message codec, [`put_sample_series`] writes one `TimeSeries` with one sample
//! straight from pre-encoded label bytes: the sender's hot path, which allocates nothing per
//! sample (Prometheus too sends one `TimeSeries` per sample).

use super::RemoteError;

/// Largest decompressed request the receiver accepts. Prometheus 2.42 has no cap; this one stops a
/// hostile snappy header from making us allocate without bound (default batches are ~50 KiB).
pub const MAX_DECODED_BYTES: usize = 256 << 20;

/// `prometheus.WriteRequest` (remote.proto). Field 2 is reserved (Cortex).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

/// `prometheus.TimeSeries`: labels, then samples in time order.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    pub exemplars: Vec<Exemplar>,
    #[prost(message, repeated, tag = "4")]
    pub histograms: Vec<Histogram>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`: a float value (any bits, NaN payloads included) at a Unix-ms timestamp.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// `prometheus.Exemplar`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Exemplar {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(double, tag = "2")]
    pub value: f64,
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

/// `prometheus.Histogram`, reduced to its timestamp (tag 15): enough to notice native histograms
/// in a request; the other fields are skipped as unknown.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Histogram {
    #[prost(int64, tag = "15")]
    pub timestamp: i64,
}

/// `prometheus.MetricMetadata`. `type` is the `MetricType` enum's number (0 unknown, 1 counter,
/// 2 gauge, 3 histogram, 4 gaugehistogram, 5 summary, 6 info, 7 stateset).
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricMetadata {
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    #[prost(string, tag = "4")]
    pub help: String,
    #[prost(string, tag = "5")]
    pub unit: String,
}

/// Decodes a request body: snappy block format, then protobuf.
pub fn decode_write_request(snappy_body: &[u8]) -> Result<WriteRequest, RemoteError> {
    let n = snap::raw::decompress_len(snappy_body)
        .map_err(|e| RemoteError::Decode(format!("snappy: {e}")))?;
    if n > MAX_DECODED_BYTES {
        return Err(RemoteError::Decode(format!(
            "decompressed request of {n} bytes exceeds the {MAX_DECODED_BYTES}-byte limit"
        )));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(snappy_body)
        .map_err(|e| RemoteError::Decode(format!("snappy: {e}")))?;
    <WriteRequest as prost::Message>::decode(raw.as_slice())
        .map_err(|e| RemoteError::Decode(format!("protobuf: {e}")))
}

/// Encodes `req` as a request body (protobuf, then snappy block format), appended to `out`.
pub fn encode_write_request(req: &WriteRequest, out: &mut Vec<u8>) {
    let raw = prost::Message::encode_to_vec(req);
    snappy_append(&raw, out);
}

/// Appends the snappy block-format compression of `raw` to `out`.
pub(crate) fn snappy_append(raw: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + snap::raw::max_compress_len(raw.len()), 0);
    // Compression into a buffer of `max_compress_len` bytes cannot fail for inputs snappy's
    // block format can hold (< 4 GiB); a request is far below that.
    match snap::raw::Encoder::new().compress(raw, &mut out[start..]) {
        Ok(n) => out.truncate(start + n),
        Err(_) => out.truncate(start),
    }
}

// ---------------------------------------------------------------------------------------------
// Hand encoder for the sender: protobuf wire format (varint, 64-bit, length-delimited).

const WIRE_VARINT: u64 = 0;
const WIRE_FIXED64: u64 = 1;
const WIRE_LEN: u64 = 2;

fn put_varint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push((x as u8) | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

fn varint_len(x: u64) -> usize {
    (64 - (x | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_key(out: &mut Vec<u8>, field: u64, wire: u64) {
    put_varint(out, (field << 3) | wire);
}

fn put_bytes_field(out: &mut Vec<u8>, field: u64, b: &[u8]) {
    put_key(out, field, WIRE_LEN);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Appends `TimeSeries.labels` entries (field 1) for `labels`: the bytes a series contributes
/// to every `TimeSeries` it is sent in, encoded once when the series is first seen.
pub(crate) fn encode_label_fields<'a>(
    labels: impl Iterator<Item = (&'a str, &'a str)>,
    out: &mut Vec<u8>,
) {
    for (name, value) in labels {
        // proto3 omits empty strings; a label name is never empty and values are non-empty.
        let inner = 1
            + varint_len(name.len() as u64)
            + name.len()
            + 1
            + varint_len(value.len() as u64)
            + value.len();
        put_key(out, 1, WIRE_LEN);
        put_varint(out, inner as u64);
        put_bytes_field(out, 1, name.as_bytes());
        put_bytes_field(out, 2, value.as_bytes());
    }
}

/// Length of an encoded `Sample` with these fields (proto3 leaves zero values out).
fn sample_len(t: i64, v: f64) -> usize {
    let mut n = 0;
    if v.to_bits() != 0 {
        n += 1 + 8;
    }
    if t != 0 {
        n += 1 + varint_len(t as u64);
    }
    n
}

/// Appends one `WriteRequest.timeseries` entry (field 1) holding the pre-encoded label fields
/// `label_fields` and one sample. Byte-identical to what prost encodes for the same message,
/// except that a value of `-0.0` is written (proto3 encoders leave it out as zero): the sender
/// keeps every value's bits.
pub(crate) fn put_sample_series(out: &mut Vec<u8>, label_fields: &[u8], t: i64, v: f64) {
    let slen = sample_len(t, v);
    let series_len = label_fields.len() + 1 + varint_len(slen as u64) + slen;
    put_key(out, 1, WIRE_LEN);
    put_varint(out, series_len as u64);
    out.extend_from_slice(label_fields);
    put_key(out, 2, WIRE_LEN);
    put_varint(out, slen as u64);
    if v.to_bits() != 0 {
        put_key(out, 1, WIRE_FIXED64);
        out.extend_from_slice(&v.to_bits().to_le_bytes());
    }
    if t != 0 {
        put_key(out, 2, WIRE_VARINT);
        put_varint(out, t as u64);
    }
}

/// Fuzz body (`fuzz/fuzz_targets/remote_write_decode.rs`): decodes `data` as a request body and,
/// when it decodes, checks that re-encoding and decoding again gives the same request. Must
/// never panic.
#[doc(hidden)]
pub fn fuzz_decode_write_request(data: &[u8]) {
    // Raw protobuf too, so the fuzzer reaches the message decoder without learning snappy first.
    let _ = <WriteRequest as prost::Message>::decode(data);
    if let Ok(req) = decode_write_request(data) {
        let mut body = Vec::new();
        encode_write_request(&req, &mut body);
        match decode_write_request(&body) {
            Ok(again) => assert!(same_request(&req, &again), "re-encoded request differs"),
            Err(e) => panic!("re-encoded request does not decode: {e}"),
        }
    }
}

/// Float equality by bits (NaN payloads included), except that proto3 (prost here, gogo-protobuf
/// in Prometheus) leaves a field equal to zero out, so `-0.0` travels as `+0.0`.
fn same_f64(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a == 0.0 && b == 0.0)
}

/// Request equality with floats compared by [`same_f64`].
fn same_request(a: &WriteRequest, b: &WriteRequest) -> bool {
    a.metadata == b.metadata
        && a.timeseries.len() == b.timeseries.len()
        && a.timeseries.iter().zip(&b.timeseries).all(|(x, y)| {
            x.labels == y.labels
                && x.histograms == y.histograms
                && x.samples.len() == y.samples.len()
                && x.samples
                    .iter()
                    .zip(&y.samples)
                    .all(|(s, r)| s.timestamp == r.timestamp && same_f64(s.value, r.value))
                && x.exemplars.len() == y.exemplars.len()
                && x.exemplars.iter().zip(&y.exemplars).all(|(e, f)| {
                    e.labels == f.labels && e.timestamp == f.timestamp && same_f64(e.value, f.value)
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_label() -> impl Strategy<Value = Label> {
        ("[a-zA-Z_][a-zA-Z0-9_]{0,12}", "\\PC{0,20}")
            .prop_map(|(name, value)| Label { name, value })
    }

    fn arb_value() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            any::<u64>().prop_map(f64::from_bits),
            Just(0.0),
            Just(-0.0),
            Just(f64::from_bits(0x7ff0_0000_0000_0002)),
        ]
    }

    fn arb_request() -> impl Strategy<Value = WriteRequest> {
        let sample =
            (arb_value(), any::<i64>()).prop_map(|(value, timestamp)| Sample { value, timestamp });
        let exemplar = (
            prop::collection::vec(arb_label(), 0..3),
            arb_value(),
            any::<i64>(),
        )
            .prop_map(|(labels, value, timestamp)| Exemplar {
                labels,
                value,
                timestamp,
            });
        let series = (
            prop::collection::vec(arb_label(), 0..6),
            prop::collection::vec(sample, 0..5),
            prop::collection::vec(exemplar, 0..2),
        )
            .prop_map(|(labels, samples, exemplars)| TimeSeries {
                labels,
                samples,
                exemplars,
                histograms: Vec::new(),
            });
        let meta = (0i32..8, "[a-z_]{0,10}", "\\PC{0,20}", "[a-z]{0,5}").prop_map(
            |(t, name, help, unit)| MetricMetadata {
                r#type: t,
                metric_family_name: name,
                help,
                unit,
            },
        );
        (
            prop::collection::vec(series, 0..8),
            prop::collection::vec(meta, 0..3),
        )
            .prop_map(|(timeseries, metadata)| WriteRequest {
                timeseries,
                metadata,
            })
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(req in arb_request()) {
            let mut body = Vec::new();
            encode_write_request(&req, &mut body);
            let back = decode_write_request(&body).unwrap();
            prop_assert!(same_request(&req, &back));
        }

        #[test]
        fn hand_encoder_matches_prost(
            labels in prop::collection::vec(("[a-z_]{1,8}", "\\PC{1,12}"), 0..6),
            t in any::<i64>(),
            v in arb_value(),
        ) {
            prop_assume!(v.to_bits() != (-0.0f64).to_bits());
            let mut fields = Vec::new();
            encode_label_fields(labels.iter().map(|(n, v)| (n.as_str(), v.as_str())), &mut fields);
            let mut ours = Vec::new();
            put_sample_series(&mut ours, &fields, t, v);
            put_sample_series(&mut ours, &fields, t, v);
            let ts = TimeSeries {
                labels: labels.iter().map(|(n, v)| Label { name: n.clone(), value: v.clone() }).collect(),
                samples: vec![Sample { value: v, timestamp: t }],
                exemplars: Vec::new(),
                histograms: Vec::new(),
            };
            let req = WriteRequest { timeseries: vec![ts.clone(), ts], metadata: Vec::new() };
            prop_assert_eq!(ours, prost::Message::encode_to_vec(&req));
        }

    }

    proptest! {
        // The fuzz body over a few thousand random and mutated inputs (stable Rust, no libFuzzer).
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn fuzz_body_never_panics(data in prop::collection::vec(any::<u8>(), 0..512)) {
            fuzz_decode_write_request(&data);
            let mut body = Vec::new();
            snappy_append(&data, &mut body);
            fuzz_decode_write_request(&body);
        }

        #[test]
        fn fuzz_body_survives_mutated_requests(
            req in arb_request(),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut raw = prost::Message::encode_to_vec(&req);
            if raw.is_empty() {
                raw.push(0x0a);
            }
            for (i, b) in &flips {
                let i = i.index(raw.len());
                raw[i] ^= b;
            }
            let cut_at = cut.index(raw.len() + 1);
            let mut body = Vec::new();
            snappy_append(&raw[..cut_at], &mut body);
            fuzz_decode_write_request(&body);
            fuzz_decode_write_request(&raw);
            let mut whole = Vec::new();
            snappy_append(&raw, &mut whole);
            for (i, b) in &flips {
                let i = i.index(whole.len());
                whole[i] ^= b;
            }
            fuzz_decode_write_request(&whole);
        }
    }

    #[test]
    fn decode_rejects_garbage_and_huge_headers() {
        assert!(matches!(
            decode_write_request(b"not snappy"),
            Err(RemoteError::Decode(_))
        ));
        // A snappy header claiming 2^32-1 bytes.
        let body = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        assert!(matches!(
            decode_write_request(&body),
            Err(RemoteError::Decode(_))
        ));
        // Valid snappy, invalid protobuf (a truncated length-delimited field).
        let mut body = Vec::new();
        snappy_append(&[0x0a, 0x10, 0x01], &mut body);
        assert!(matches!(
            decode_write_request(&body),
            Err(RemoteError::Decode(_))
        ));
    }

    #[test]
    fn hand_encoder_keeps_negative_zero() {
        let mut raw = Vec::new();
        put_sample_series(&mut raw, &[], 7, -0.0);
        let req = <WriteRequest as prost::Message>::decode(raw.as_slice()).unwrap();
        let v = req.timeseries[0].samples[0].value;
        assert_eq!(v.to_bits(), (-0.0f64).to_bits());
    }

    #[test]
    fn staleness_nan_bits_survive() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: "__name__".into(),
                    value: "up".into(),
                }],
                samples: vec![Sample {
                    value: stale,
                    timestamp: 5,
                }],
                exemplars: Vec::new(),
                histograms: Vec::new(),
            }],
            metadata: Vec::new(),
        };
        let mut body = Vec::new();
        encode_write_request(&req, &mut body);
        let back = decode_write_request(&body).unwrap();
        assert_eq!(
            back.timeseries[0].samples[0].value.to_bits(),
            stale.to_bits()
        );
    }
}
