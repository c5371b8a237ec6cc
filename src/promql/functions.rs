//! The arithmetic of PromQL's functions over float samples, operation for operation as in
//! Prometheus' `promql/functions.go` and `promql/quantile.go`, so results agree to the bit.
//!
//! Everything here is a pure function of a window of samples (or a list of values) and returns
//! `None` where Prometheus returns no sample.

/// Kahan-Neumaier increment (Prometheus' `kahansum.Inc`): returns the new sum and compensation.
#[inline]
pub(crate) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// Seconds of a millisecond duration the way Go's `Duration.Seconds()` computes them.
/// Go splits the nanoseconds into whole seconds and the remainder; with milliseconds both parts
/// are exact in i64 (`ms / 1000` and `(ms % 1000) * 10^6` equal Go's quotient and remainder), so
/// no 128-bit division is needed on the per-step path.
pub(crate) fn duration_seconds(ms: i64) -> f64 {
    let sec = ms / 1000;
    let nsec = (ms % 1000) * 1_000_000;
    sec as f64 + nsec as f64 / 1e9
}

/// `rate`, `increase` and `delta` (Prometheus' `extrapolatedRate`). `range_start` is exclusive.
pub(crate) fn extrapolated_rate(
    pts: &[(i64, f64)],
    range_start: i64,
    range_end: i64,
    range_ms: i64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if pts.len() < 2 {
        return None;
    }
    let mut result = pts[pts.len() - 1].1 - pts[0].1;
    if is_counter {
        for w in pts.windows(2) {
            if w[1].1 < w[0].1 {
                result += w[0].1;
            }
        }
    }
    Some(extrapolate(
        pts,
        result,
        range_start,
        range_end,
        duration_seconds(range_ms),
        is_counter,
        is_rate,
    ))
}

/// The positions `k` of a series where `pts[k + 1] < pts[k]` (a counter reset), in order; NaN
/// comparisons are false, as in the window scan.
pub(crate) fn reset_positions(pts: &[(i64, f64)], out: &mut Vec<usize>) {
    out.clear();
    out.extend(
        pts.windows(2)
            .enumerate()
            .filter(|(_, w)| w[1].1 < w[0].1)
            .map(|(k, _)| k),
    );
}

/// `rate`/`increase` of the window `pts[lo..hi]` with the series' reset positions precomputed by
/// [`reset_positions`]: the resets inside the window are added in position order, the same
/// additions in the same order as the scan in [`extrapolated_rate`], so the result is
/// bit-identical while a step costs O(log resets) instead of O(window). `range_secs` is
/// [`duration_seconds`] of the range, computed once per query instead of once per step.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(crate) fn counter_rate_indexed(
    pts: &[(i64, f64)],
    lo: usize,
    hi: usize,
    resets: &[usize],
    range_start: i64,
    range_end: i64,
    range_secs: f64,
    is_rate: bool,
) -> Option<f64> {
    let w = pts.get(lo..hi)?;
    let (&(_, first), &(_, last)) = (w.first()?, w.last()?);
    if w.len() < 2 {
        return None;
    }
    let mut result = last - first;
    // Reset k lies in the window when both k and k + 1 do: lo <= k < hi - 1. Most series have
    // none: no search then.
    if !resets.is_empty() {
        let a = resets.partition_point(|&k| k < lo);
        let b = resets.partition_point(|&k| k < hi - 1);
        for &k in resets.get(a..b).unwrap_or_default() {
            if let Some(p) = pts.get(k) {
                result += p.1;
            }
        }
    }
    Some(extrapolate(
        w,
        result,
        range_start,
        range_end,
        range_secs,
        true,
        is_rate,
    ))
}

/// The extrapolation step of Prometheus' `extrapolatedRate` given the window's raw difference
/// (`result`, resets included) and the range in seconds. `pts` has at least two samples.
#[inline]
fn extrapolate(
    pts: &[(i64, f64)],
    result: f64,
    range_start: i64,
    range_end: i64,
    range_secs: f64,
    is_counter: bool,
    is_rate: bool,
) -> f64 {
    let n_minus_one = pts.len() - 1;
    let (first_t, first_v) = pts[0];
    let last_t = pts[n_minus_one].0;
    let mut duration_to_start = (first_t - range_start) as f64 / 1000.0;
    let mut duration_to_end = (range_end - last_t) as f64 / 1000.0;
    let sampled_interval = (last_t - first_t) as f64 / 1000.0;
    let avg = sampled_interval / n_minus_one as f64;
    let threshold = avg * 1.1;
    if duration_to_start >= threshold {
        duration_to_start = avg / 2.0;
    }
    if is_counter {
        let mut duration_to_zero = duration_to_start;
        if result > 0.0 && first_v >= 0.0 {
            duration_to_zero = sampled_interval * (first_v / result);
        }
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    if duration_to_end >= threshold {
        duration_to_end = avg / 2.0;
    }
    let mut factor = 1.0;
    if sampled_interval != 0.0 {
        factor = (sampled_interval + duration_to_start + duration_to_end) / sampled_interval;
    }
    if is_rate {
        factor /= range_secs;
    }
    result * factor
}

/// `irate` and `idelta` (Prometheus' `instantValue`).
pub(crate) fn instant_value(pts: &[(i64, f64)], is_rate: bool) -> Option<f64> {
    if pts.len() < 2 {
        return None;
    }
    let (t0, v0) = pts[pts.len() - 2];
    let (t1, v1) = pts[pts.len() - 1];
    let interval = t1 - t0;
    if interval == 0 {
        return None;
    }
    // After a counter reset irate uses the last value alone; NaN comparisons are false.
    let reset = v1 < v0;
    let mut r = if !is_rate || !reset { v1 - v0 } else { v1 };
    if is_rate {
        r /= interval as f64 / 1000.0;
    }
    Some(r)
}

/// `double_exponential_smoothing(m, sf, tf)`.
pub(crate) fn double_exponential_smoothing(pts: &[(i64, f64)], sf: f64, tf: f64) -> Option<f64> {
    let l = pts.len();
    if l < 2 {
        return None;
    }
    let mut s0 = 0.0;
    let mut s1 = pts[0].1;
    let mut b = pts[1].1 - pts[0].1;
    for (i, p) in pts.iter().enumerate().skip(1) {
        let x = sf * p.1;
        if i - 1 != 0 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Some(s1)
}

pub(crate) fn avg_over_time(pts: &[(i64, f64)]) -> f64 {
    let mut sum = pts[0].1;
    let mut count = 1.0;
    let mut mean = 0.0;
    let mut c = 0.0;
    let mut incremental = false;
    for (i, p) in pts.iter().enumerate().skip(1) {
        let f = p.1;
        count = (i + 1) as f64;
        if !incremental {
            let (ns, nc) = kahan_inc(f, sum, c);
            if !ns.is_infinite() {
                sum = ns;
                c = nc;
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        let (m, nc) = kahan_inc(f / count, q * mean, q * c);
        mean = m;
        c = nc;
    }
    if incremental {
        mean + c
    } else {
        sum / count + c / count
    }
}

pub(crate) fn sum_over_time(pts: &[(i64, f64)]) -> f64 {
    let (mut sum, mut c) = (0.0, 0.0);
    for p in pts {
        (sum, c) = kahan_inc(p.1, sum, c);
    }
    if sum.is_infinite() {
        sum
    } else {
        sum + c
    }
}

/// `stdvar_over_time` (the variance; `stddev_over_time` takes its square root).
pub(crate) fn variance_over_time(pts: &[(i64, f64)]) -> f64 {
    let mut count = 0.0;
    let (mut mean, mut c_mean) = (0.0, 0.0);
    let (mut aux, mut c_aux) = (0.0, 0.0);
    for p in pts {
        let f = p.1;
        count += 1.0;
        let delta = f - (mean + c_mean);
        (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_inc(delta * (f - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

/// `max_over_time` (`max == true`) and `min_over_time`: a NaN is replaced by any later value.
pub(crate) fn extreme_over_time(pts: &[(i64, f64)], max: bool) -> f64 {
    let mut m = pts[0].1;
    for p in pts {
        let better = if max { p.1 > m } else { p.1 < m };
        if better || m.is_nan() {
            m = p.1;
        }
    }
    m
}

/// Prometheus' `quantile` over a list of values (sorts `values`).
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    // Go's sort with `Less = NaN || a < b`: NaNs first (their relative order is irrelevant).
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (n - 1.0).min(lower + 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// `mad_over_time`: median absolute deviation.
pub(crate) fn mad_over_time(pts: &[(i64, f64)]) -> f64 {
    if pts.iter().any(|p| p.1.is_nan()) {
        return f64::NAN;
    }
    let mut values: Vec<f64> = pts.iter().map(|p| p.1).collect();
    let median = quantile(0.5, &mut values);
    for v in values.iter_mut() {
        *v = (*v - median).abs();
    }
    quantile(0.5, &mut values)
}

/// Least-squares fit (Prometheus' `linearRegression`), x in seconds relative to `intercept_t`.
pub(crate) fn linear_regression(pts: &[(i64, f64)], intercept_t: i64) -> (f64, f64) {
    let mut n = 0.0;
    let (mut sum_x, mut c_x) = (0.0, 0.0);
    let (mut sum_y, mut c_y) = (0.0, 0.0);
    let (mut sum_xy, mut c_xy) = (0.0, 0.0);
    let (mut sum_x2, mut c_x2) = (0.0, 0.0);
    let init_y = pts[0].1;
    let mut const_y = true;
    for (i, &(t, v)) in pts.iter().enumerate() {
        if const_y && i > 0 && v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (t - intercept_t) as f64 / 1e3;
        (sum_x, c_x) = kahan_inc(x, sum_x, c_x);
        (sum_y, c_y) = kahan_inc(v, sum_y, c_y);
        (sum_xy, c_xy) = kahan_inc(x * v, sum_xy, c_xy);
        (sum_x2, c_x2) = kahan_inc(x * x, sum_x2, c_x2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    sum_x += c_x;
    sum_y += c_y;
    sum_xy += c_xy;
    sum_x2 += c_x2;
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

pub(crate) fn resets(pts: &[(i64, f64)]) -> f64 {
    pts.windows(2).filter(|w| w[1].1 < w[0].1).count() as f64
}

pub(crate) fn changes(pts: &[(i64, f64)]) -> f64 {
    pts.windows(2)
        .filter(|w| w[1].1 != w[0].1 && !(w[1].1.is_nan() && w[0].1.is_nan()))
        .count() as f64
}

/// One classic histogram bucket: upper bound and cumulative count.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bucket {
    pub upper: f64,
    pub count: f64,
}

fn sort_buckets(b: &mut [Bucket]) {
    b.sort_by(|x, y| {
        x.upper
            .partial_cmp(&y.upper)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
}

fn coalesce_buckets(b: &mut Vec<Bucket>) {
    let mut last = b[0];
    let mut i = 0;
    for k in 1..b.len() {
        let x = b[k];
        if x.upper == last.upper {
            last.count += x.count;
        } else {
            b[i] = last;
            last = x;
            i += 1;
        }
    }
    b[i] = last;
    b.truncate(i + 1);
}

fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    const MIN_NORMAL: f64 = f64::MIN_POSITIVE;
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < MIN_NORMAL {
        return diff < epsilon * MIN_NORMAL;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}

/// What `ensure_monotonic` had to fix: the lowest and highest upper bound whose count was raised
/// and the largest decrease removed (the details of Prometheus' monotonicity info annotation).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct ForcedMonotonicity {
    pub min_bucket: f64,
    pub max_bucket: f64,
    pub max_diff: f64,
}

/// Raises every count below its predecessor's (differences within the 1e-12 tolerance are
/// corrected silently); reports the real decreases it removed.
fn ensure_monotonic(b: &mut [Bucket]) -> Option<ForcedMonotonicity> {
    let mut forced: Option<ForcedMonotonicity> = None;
    let mut prev = b[0].count;
    for x in b.iter_mut().skip(1) {
        let curr = x.count;
        if curr == prev {
            continue;
        }
        if almost_equal(prev, curr, 1e-12) {
            x.count = prev;
            continue;
        }
        if curr < prev {
            x.count = prev;
            let f = forced.get_or_insert(ForcedMonotonicity {
                min_bucket: f64::INFINITY,
                max_bucket: f64::NEG_INFINITY,
                max_diff: 0.0,
            });
            if x.upper < f.min_bucket {
                f.min_bucket = x.upper;
            }
            if x.upper > f.max_bucket {
                f.max_bucket = x.upper;
            }
            if prev - curr > f.max_diff {
                f.max_diff = prev - curr;
            }
            continue;
        }
        prev = curr;
    }
    forced
}

/// `histogram_quantile` over classic buckets (Prometheus' `BucketQuantile`).
/// Also says whether the buckets had to be made monotonic (for the info annotation).
pub(crate) fn bucket_quantile_checked(
    q: f64,
    buckets: &mut Vec<Bucket>,
) -> (f64, Option<ForcedMonotonicity>) {
    if q.is_nan() {
        return (f64::NAN, None);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, None);
    }
    if q > 1.0 {
        return (f64::INFINITY, None);
    }
    sort_buckets(buckets);
    match buckets.last() {
        Some(b) if b.upper == f64::INFINITY => {}
        _ => return (f64::NAN, None),
    }
    coalesce_buckets(buckets);
    let forced = ensure_monotonic(buckets);
    if buckets.len() < 2 {
        return (f64::NAN, forced);
    }
    let observations = buckets[buckets.len() - 1].count;
    if observations == 0.0 {
        return (f64::NAN, forced);
    }
    let mut rank = q * observations;
    let n = buckets.len() - 1;
    // sort.Search over [0, n): the first bucket whose count >= rank.
    let b = buckets[..n].partition_point(|x| x.count < rank);
    if b == n {
        return (buckets[n - 1].upper, forced);
    }
    if b == 0 && buckets[0].upper <= 0.0 {
        return (buckets[0].upper, forced);
    }
    let mut start = 0.0;
    let end = buckets[b].upper;
    let mut count = buckets[b].count;
    if b > 0 {
        start = buckets[b - 1].upper;
        count -= buckets[b - 1].count;
        rank -= buckets[b - 1].count;
    }
    (start + (end - start) * (rank / count), forced)
}

/// `histogram_fraction` over classic buckets (Prometheus' `BucketFraction`).
pub(crate) fn bucket_fraction(lower: f64, upper: f64, buckets: &mut Vec<Bucket>) -> f64 {
    sort_buckets(buckets);
    match buckets.last() {
        Some(b) if b.upper == f64::INFINITY => {}
        _ => return f64::NAN,
    }
    coalesce_buckets(buckets);
    let count = buckets[buckets.len() - 1].count;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let mut rank = 0.0;
    let (mut lower_rank, mut upper_rank) = (0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    let mut lower_bound = if buckets[0].upper <= 0.0 {
        f64::NEG_INFINITY
    } else {
        0.0
    };
    for (i, b) in buckets.iter().enumerate() {
        if i > 0 {
            lower_bound = buckets[i - 1].upper;
        }
        let upper_bound = b.upper;
        let interp = |v: f64, rank: f64| {
            if lower_bound == f64::NEG_INFINITY {
                return b.count;
            }
            rank + (b.count - rank) * (v - lower_bound) / (upper_bound - lower_bound)
        };
        if !lower_set && lower_bound >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && lower_bound >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && lower_bound < lower && upper_bound > lower {
            lower_rank = interp(lower, rank);
            lower_set = true;
        }
        if !upper_set && lower_bound < upper && upper_bound > upper {
            upper_rank = interp(upper, rank);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank = b.count;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    (upper_rank - lower_rank) / count
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`: shortest round-trip, never an exponent.
pub(crate) fn format_float_f(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    // Rust's Display is the shortest round-trip representation without exponent.
    format!("{f}")
}

/// Civil date of days since the epoch (Howard Hinnant's algorithm): (year, month, day).
pub(crate) fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

/// The date functions, on Unix seconds truncated as Go's `time.Unix(int64(f), 0)`.
pub(crate) fn date_part(name: &str, secs: f64) -> f64 {
    let s = secs as i64;
    let days = s.div_euclid(86_400);
    let sod = s.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    match name {
        "year" => y as f64,
        "month" => m as f64,
        "day_of_month" => d as f64,
        "day_of_week" => (days + 4).rem_euclid(7) as f64,
        "day_of_year" => {
            let cum = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
            let mut doy = cum[(m - 1) as usize] + d;
            if m > 2 && is_leap(y) {
                doy += 1;
            }
            doy as f64
        }
        "days_in_month" => match m {
            2 if is_leap(y) => 29.0,
            2 => 28.0,
            4 | 6 | 9 | 11 => 30.0,
            _ => 31.0,
        },
        "hour" => (sod / 3600) as f64,
        "minute" => (sod % 3600 / 60) as f64,
        _ => f64::NAN,
    }
}

/// Natural-order string comparison (Prometheus' `natsort.Compare`): is `a` before `b`.
pub(crate) fn natsort_less(a: &str, b: &str) -> bool {
    let (ab, bb) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < ab.len() && j < bb.len() {
        let (ca, cb) = (ab[i], bb[j]);
        if ca.is_ascii_digit() && cb.is_ascii_digit() {
            let si = i;
            while i < ab.len() && ab[i].is_ascii_digit() {
                i += 1;
            }
            let sj = j;
            while j < bb.len() && bb[j].is_ascii_digit() {
                j += 1;
            }
            let na = a[si..i].trim_start_matches('0');
            let nb = b[sj..j].trim_start_matches('0');
            if na.len() != nb.len() {
                return na.len() < nb.len();
            }
            if na != nb {
                return na < nb;
            }
            continue;
        }
        if ca != cb {
            return ca < cb;
        }
        i += 1;
        j += 1;
    }
    ab.len() - i < bb.len() - j
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Go's `Duration.Seconds()` as written with 128-bit nanoseconds, the reference for the i64 form.
    fn duration_seconds_i128(ms: i64) -> f64 {
        let ns = ms as i128 * 1_000_000;
        (ns / 1_000_000_000) as f64 + (ns % 1_000_000_000) as f64 / 1e9
    }

    proptest! {
        #[test]
        fn duration_seconds_matches_128_bit_form(ms in any::<i64>()) {
            prop_assert_eq!(duration_seconds(ms).to_bits(), duration_seconds_i128(ms).to_bits());
        }

        /// Every window of a series with resets (and NaNs) gives the scan's bits exactly.
        #[test]
        fn indexed_counter_rate_is_bit_identical(
            vals in prop::collection::vec(
                prop_oneof![8 => 0.0f64..1e6, 1 => Just(f64::NAN), 1 => Just(0.0)], 0..40),
            range in 1i64..200_000,
            is_rate in any::<bool>(),
        ) {
            let pts: Vec<(i64, f64)> =
                vals.iter().enumerate().map(|(i, &v)| (i as i64 * 15_000, v)).collect();
            let mut resets = Vec::new();
            reset_positions(&pts, &mut resets);
            for lo in 0..=pts.len() {
                for hi in lo..=pts.len() {
                    let end = pts.get(hi.saturating_sub(1)).map_or(0, |p| p.0) + 7_000;
                    let start = end - range;
                    let scan = extrapolated_rate(&pts[lo..hi], start, end, range, true, is_rate);
                    let secs = duration_seconds(range);
                    let idx = counter_rate_indexed(&pts, lo, hi, &resets, start, end, secs, is_rate);
                    prop_assert_eq!(scan.map(f64::to_bits), idx.map(f64::to_bits));
                }
            }
        }
    }

    #[test]
    fn go_duration_seconds() {
        assert_eq!(duration_seconds(300_000), 300.0);
        assert_eq!(duration_seconds(1_500), 1.5);
    }

    #[test]
    fn kahan_recovers_lost_bits() {
        let (s, c) = [1e100, 1.0, -1e100]
            .iter()
            .fold((0.0, 0.0), |(s, c), &x| kahan_inc(x, s, c));
        assert_eq!(s + c, 1.0);
    }

    #[test]
    fn dates() {
        // 2020-02-29 12:34:56 UTC
        let t = 1_582_979_696.0;
        assert_eq!(date_part("year", t), 2020.0);
        assert_eq!(date_part("month", t), 2.0);
        assert_eq!(date_part("day_of_month", t), 29.0);
        assert_eq!(date_part("day_of_year", t), 60.0);
        assert_eq!(date_part("days_in_month", t), 29.0);
        assert_eq!(date_part("day_of_week", t), 6.0);
        assert_eq!(date_part("hour", t), 12.0);
        assert_eq!(date_part("minute", t), 34.0);
    }

    #[test]
    fn bucket_quantile_interpolates() {
        let mut b = vec![
            Bucket {
                upper: 1.0,
                count: 10.0,
            },
            Bucket {
                upper: 2.0,
                count: 20.0,
            },
            Bucket {
                upper: f64::INFINITY,
                count: 20.0,
            },
        ];
        assert_eq!(bucket_quantile_checked(0.75, &mut b), (1.5, None));
    }

    #[test]
    fn bucket_quantile_reports_forced_monotonicity() {
        let b = |upper: f64, count: f64| Bucket { upper, count };
        // Decreases of 2 (at le=2) and 5 (at +Inf); a difference within 1e-12 is not reported.
        let mut v = vec![
            b(1.0, 10.0),
            b(2.0, 8.0),
            b(4.0, 12.0),
            b(8.0, 12.0 + 1e-14),
            b(f64::INFINITY, 7.0),
        ];
        let (q, fix) = bucket_quantile_checked(0.5, &mut v);
        assert_eq!(q, 0.6);
        assert_eq!(
            fix,
            Some(ForcedMonotonicity {
                min_bucket: 2.0,
                max_bucket: f64::INFINITY,
                max_diff: 5.0,
            })
        );
        let mut ok = vec![b(1.0, 1.0), b(f64::INFINITY, 1.0 + 1e-14)];
        assert_eq!(bucket_quantile_checked(0.5, &mut ok).1, None);
    }

    #[test]
    fn natural_order() {
        assert!(natsort_less("a2", "a10"));
        assert!(!natsort_less("a10", "a2"));
        assert!(natsort_less("a", "b"));
    }
}
