//! `tsdbctl query --plot`: a range query's matrix drawn as a chart in the terminal, for people who
//! would rather look than read.
//!
//! A pure function of the matrix and the layout ([`render`]): a y axis with humanized tick values
//! at round steps (1, 2 or 5 times a power of ten), the plot area, an x axis with UTC times at round
//! intervals in a format that suits the span, and a legend. Lines are drawn in Unicode braille (2x4
//! dots per cell) and coloured per series with ANSI escapes when colour is on (stdout is a
//! terminal). Without colour several series would be indistinguishable in braille, so each is
//! drawn with its own marker character at cell resolution instead; a lone series stays braille.
//! Points are connected only between consecutive steps: a missing step (no sample within the
//! lookback, a staleness marker) is a gap, and NaN or infinite values are skipped as gaps too.

use tsdb::labels::Labels;
use tsdb::promql::RangeSeries;

/// Layout of a chart.
#[derive(Clone, Copy, Debug)]
pub struct PlotOptions {
    /// Total width in columns, y-axis labels included.
    pub width: usize,
    /// Height of the plot area in rows (the axis, times and legend come below).
    pub height: usize,
    /// ANSI colours, one per series.
    pub color: bool,
    /// Series listed in the legend; the rest are summed up as "+N more".
    pub max_legend: usize,
}

/// Default plot height in rows.
pub const DEFAULT_HEIGHT: usize = 16;
/// Default width when the terminal's is unknown (`COLUMNS` unset).
pub const DEFAULT_WIDTH: usize = 100;
/// Legend entries before "+N more".
pub const DEFAULT_MAX_LEGEND: usize = 10;

const MIN_PLOT_COLS: usize = 10;
const MIN_PLOT_ROWS: usize = 2;
/// Bounds on the requested size, so a typo cannot ask for gigabytes of cells.
const MAX_PLOT_COLS: usize = 4000;
const MAX_PLOT_ROWS: usize = 1000;
/// ANSI foreground colours, in the order series get them.
const COLORS: &[u8] = &[34, 31, 32, 33, 35, 36, 94, 91, 92, 93, 95, 96];
/// Markers of series when there is no colour.
const MARKERS: &[char] = &['*', '+', 'o', 'x', '#', '@', '%', '&', '=', '~'];
/// Round time steps for x-axis ticks, in seconds.
const TIME_STEPS: &[i64] = &[
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
    172_800, 604_800, 1_209_600, 2_592_000, 7_776_000, 31_536_000,
];

/// Draws `series` (points in milliseconds) over the query range `[start, end]` at `step` ms.
pub fn render(
    series: &[RangeSeries],
    start: i64,
    end: i64,
    step: i64,
    opts: &PlotOptions,
) -> String {
    let finite = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|v| v.is_finite());
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in finite {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return "no data points to plot (the query returned no finite values)\n".into();
    }
    let ticks = y_ticks(lo, hi, (opts.height / 3).clamp(2, 8));
    let (ylo, yhi) = (ticks[0], ticks[ticks.len() - 1]);
    let step_size = if ticks.len() > 1 {
        ticks[1] - ticks[0]
    } else {
        1.0
    };
    // One unit for the whole axis, chosen by its largest tick.
    let mag = ticks.iter().fold(step_size.abs(), |m, t| m.max(t.abs()));
    let labels: Vec<String> = ticks.iter().map(|&t| humanize(t, step_size, mag)).collect();
    let label_w = labels.iter().map(|l| l.chars().count()).max().unwrap_or(1);
    let cols = opts
        .width
        .saturating_sub(label_w + 2)
        .clamp(MIN_PLOT_COLS, MAX_PLOT_COLS);
    let rows = opts.height.clamp(MIN_PLOT_ROWS, MAX_PLOT_ROWS);

    let braille = opts.color || series.len() == 1;
    let (dx, dy) = if braille { (2, 4) } else { (1, 1) };
    let mut canvas = Canvas::new(cols, rows, dx, dy);
    let xmax = (cols * dx - 1) as f64;
    let ymax = (rows * dy - 1) as f64;
    // In floats, so that no range overflows; clamped, so that points outside the range (not
    // from a range query) cannot make a line walk far outside the canvas.
    let x_of = |t: i64| -> i64 {
        if end <= start {
            (xmax / 2.0).round() as i64
        } else {
            let f = (t as f64 - start as f64) / (end as f64 - start as f64);
            (f * xmax).round().clamp(0.0, xmax) as i64
        }
    };
    let y_of = |v: f64| -> i64 { ((yhi - v) / (yhi - ylo) * ymax).round().clamp(0.0, ymax) as i64 };
    for (si, s) in series.iter().enumerate() {
        let mut prev: Option<(i64, i64, i64)> = None; // (t, x, y)
        for &(t, v) in &s.points {
            if !v.is_finite() {
                prev = None;
                continue;
            }
            let (x, y) = (x_of(t), y_of(v));
            match prev {
                Some((pt, px, py)) if t.saturating_sub(pt) <= step => canvas.line(px, py, x, y, si),
                _ => canvas.line(x, y, x, y, si),
            }
            prev = Some((t, x, y));
        }
    }

    let mut out = String::new();
    // Tick rows: where each tick value falls, top (highest) first.
    let tick_rows: Vec<(usize, &String)> = ticks
        .iter()
        .zip(&labels)
        .map(|(&t, l)| ((y_of(t).max(0) as usize / dy).min(rows - 1), l))
        .collect();
    for r in 0..rows {
        match tick_rows.iter().rev().find(|(tr, _)| *tr == r) {
            Some((_, l)) => out.push_str(&format!("{l:>label_w$} ┤")),
            None => out.push_str(&format!("{:label_w$} │", "")),
        }
        canvas.write_row(r, braille, opts.color, &mut out);
        out.push('\n');
    }
    x_axis(&mut out, label_w, cols, dx, start, end, &x_of);
    legend(&mut out, series, braille, opts);
    out
}

/// Cells of the plot area; each remembers the last series drawn in it.
struct Canvas {
    cols: usize,
    rows: usize,
    dx: usize,
    dy: usize,
    dots: Vec<u8>,
    owner: Vec<Option<usize>>,
}

impl Canvas {
    fn new(cols: usize, rows: usize, dx: usize, dy: usize) -> Canvas {
        Canvas {
            cols,
            rows,
            dx,
            dy,
            dots: vec![0; cols * rows],
            owner: vec![None; cols * rows],
        }
    }

    fn set(&mut self, x: i64, y: i64, series: usize) {
        if x < 0 || y < 0 {
            return;
        }
        let (x, y) = (x as usize, y as usize);
        let (c, r) = (x / self.dx, y / self.dy);
        if c >= self.cols || r >= self.rows {
            return;
        }
        let i = r * self.cols + c;
        // Braille dot numbering: columns of 1-2-3-7 and 4-5-6-8.
        const BITS: [[u8; 4]; 2] = [[0x01, 0x02, 0x04, 0x40], [0x08, 0x10, 0x20, 0x80]];
        self.dots[i] |= BITS[(x % self.dx).min(1)][(y % self.dy).min(3)];
        self.owner[i] = Some(series);
    }

    /// Bresenham's line in dot coordinates.
    fn line(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, series: usize) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            self.set(x, y, series);
            if x == x1 && y == y1 {
                return;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    fn write_row(&self, r: usize, braille: bool, color: bool, out: &mut String) {
        for c in 0..self.cols {
            let i = r * self.cols + c;
            let Some(s) = self.owner[i] else {
                out.push(' ');
                continue;
            };
            let ch = if braille {
                char::from_u32(0x2800 + self.dots[i] as u32).unwrap_or(' ')
            } else {
                MARKERS[s % MARKERS.len()]
            };
            if color {
                out.push_str(&format!("\x1b[{}m{ch}\x1b[0m", COLORS[s % COLORS.len()]));
            } else {
                out.push(ch);
            }
        }
    }
}

/// Tick values: a round step (1, 2, 2.5 or 5 times a power of ten) giving about `target` intervals,
/// from the multiple at or below `lo` to the one at or above `hi`.
fn y_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    if !(hi - lo).is_finite() {
        // Beyond f64's range (values near ±1.8e308): the extremes are the ticks.
        return vec![lo, hi];
    }
    let (lo, hi) = if lo == hi {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        (lo - pad, hi + pad)
    } else {
        (lo, hi)
    };
    let raw = (hi - lo) / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    // The tolerance keeps float noise (1.1 / 0.1 = 11.000000000000002) from adding a tick.
    let first = (lo / step + 1e-9).floor();
    let last = (hi / step - 1e-9).ceil();
    let n = ((last - first) as usize).min(100);
    (0..=n).map(|i| (first + i as f64) * step).collect()
}

/// A tick value with the SI suffix that suits `mag` (the axis' largest magnitude) and as many
/// decimals as the tick step needs.
fn humanize(v: f64, step: f64, mag: f64) -> String {
    // (smallest magnitude, scale, suffix): plain decimals from 0.01 up to 1000.
    const UNITS: &[(f64, f64, &str)] = &[
        (1e12, 1e12, "T"),
        (1e9, 1e9, "G"),
        (1e6, 1e6, "M"),
        (1e3, 1e3, "k"),
        (1e-2, 1.0, ""),
        (1e-5, 1e-3, "m"),
        (1e-8, 1e-6, "µ"),
    ];
    let &(_, scale, suffix) = UNITS
        .iter()
        .find(|(m, _, _)| mag >= *m)
        .unwrap_or(&(0.0, 1e-9, "n"));
    // As many decimals as the step needs to be exact (2.5 needs one, 0.25 two).
    let unit_step = step.abs() / scale;
    let decimals = (0..=6)
        .find(|&d| {
            let x = unit_step * 10f64.powi(d);
            (x - x.round()).abs() < 1e-6 * x.max(1.0)
        })
        .unwrap_or(6) as usize;
    let x = v / scale;
    // Round away float noise such as 0.30000000000000004 before printing, and print -0 as 0.
    let s = format!("{:.*}", decimals, x + 0.0);
    let s = if s
        .trim_start_matches('-')
        .chars()
        .all(|c| c == '0' || c == '.')
    {
        s.trim_start_matches('-').to_string()
    } else {
        s
    };
    format!("{s}{suffix}")
}

/// The x axis line with a mark at each round time, and the times below it.
fn x_axis(
    out: &mut String,
    label_w: usize,
    cols: usize,
    dx: usize,
    start: i64,
    end: i64,
    x_of: &dyn Fn(i64) -> i64,
) {
    let span_s = end.saturating_sub(start) / 1000;
    // The smallest round step whose labels fit side by side.
    let fits = |step_s: i64| {
        let label_len = time_label(start, span_s, step_s).chars().count() + 2;
        span_s / step_s < (cols / label_len).max(1) as i64
    };
    let step_s = TIME_STEPS
        .iter()
        .copied()
        .find(|&s| fits(s))
        .unwrap_or_else(|| {
            let years = (span_s / 31_536_000).max(1);
            31_536_000 * years
        });
    let fmt_t = |ms: i64| time_label(ms, span_s, step_s);
    let label_len = fmt_t(start).chars().count() + 2;
    let step_ms = step_s * 1000;
    let mut ticks = Vec::new();
    let mut t = start.div_euclid(step_ms).saturating_mul(step_ms);
    if t < start {
        t = t.saturating_add(step_ms);
    }
    while t <= end && ticks.len() < 1000 {
        ticks.push(t);
        match t.checked_add(step_ms) {
            Some(next) => t = next,
            None => break,
        }
    }
    if ticks.is_empty() {
        ticks.push(start);
    }
    let mut axis: Vec<char> = vec!['─'; cols];
    let mut text: Vec<char> = vec![' '; cols + label_len];
    let mut free_from = 0usize;
    for &t in &ticks {
        let c = (x_of(t).max(0) as usize / dx).min(cols - 1);
        axis[c] = '┬';
        let l: Vec<char> = fmt_t(t).chars().collect();
        let at = c.saturating_sub(l.len() / 2);
        if at >= free_from && at + l.len() <= text.len() {
            text[at..at + l.len()].copy_from_slice(&l);
            free_from = at + l.len() + 1;
        }
    }
    out.push_str(&format!("{:label_w$} └", ""));
    out.extend(axis);
    out.push('\n');
    let line: String = text.into_iter().collect();
    out.push_str(&format!("{:label_w$}  {}", "", line.trim_end()));
    out.push('\n');
}

/// A UTC time in a format for the span and the tick step: seconds when ticks are under a minute
/// apart, hours and minutes within a day, with the date beyond, the date alone for daily ticks.
fn time_label(ms: i64, span_s: i64, step_s: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (h, mi, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let (y, mo, d) = civil_from_days(days);
    if step_s < 60 {
        format!("{h:02}:{mi:02}:{s:02}")
    } else if step_s >= 86_400 {
        format!("{y:04}-{mo:02}-{d:02}")
    } else if span_s < 86_400 {
        format!("{h:02}:{mi:02}")
    } else {
        format!("{mo:02}-{d:02} {h:02}:{mi:02}")
    }
}

/// Date of days since 1970-01-01 (proleptic Gregorian; Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn legend(out: &mut String, series: &[RangeSeries], braille: bool, opts: &PlotOptions) {
    for (i, s) in series.iter().take(opts.max_legend).enumerate() {
        let swatch = if opts.color {
            format!("\x1b[{}m━━\x1b[0m", COLORS[i % COLORS.len()])
        } else if braille {
            "⠤⠤".to_string()
        } else {
            let m = MARKERS[i % MARKERS.len()];
            format!("{m}{m}")
        };
        out.push_str(&format!("{swatch} {}\n", series_name(&s.labels)));
    }
    if series.len() > opts.max_legend {
        out.push_str(&format!("+{} more\n", series.len() - opts.max_legend));
    }
}

fn series_name(l: &Labels) -> String {
    if l.is_empty() {
        "{}".into()
    } else {
        l.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(pairs: &[(&str, &str)], points: &[(i64, f64)]) -> RangeSeries {
        RangeSeries {
            labels: Labels::from_pairs(pairs),
            points: points.to_vec(),
        }
    }

    fn plain(width: usize, height: usize) -> PlotOptions {
        PlotOptions {
            width,
            height,
            color: false,
            max_legend: DEFAULT_MAX_LEGEND,
        }
    }

    #[test]
    fn golden_two_series() {
        // 10:00 to 10:05 UTC every minute; series b has no point at 10:02 (a gap).
        let t0 = 1_795_168_800_000;
        let m = 60_000;
        let a = series(
            &[("job", "a")],
            &[
                (t0, 0.0),
                (t0 + m, 1.0),
                (t0 + 2 * m, 2.0),
                (t0 + 3 * m, 3.0),
                (t0 + 4 * m, 4.0),
                (t0 + 5 * m, 5.0),
            ],
        );
        let b = series(
            &[("job", "b")],
            &[
                (t0, 5.0),
                (t0 + m, 4.0),
                (t0 + 3 * m, 2.0),
                (t0 + 4 * m, 1.0),
                (t0 + 5 * m, 0.0),
            ],
        );
        let got = render(&[a, b], t0, t0 + 5 * m, m, &plain(30, 6));
        // b's missing point at 10:02 leaves its two runs unjoined; ticks every 2.5 and 2 min.
        let expected = [
            "5.0 ┤+++                   ***",
            "    │   +++           *****   ",
            "    │            *****        ",
            "2.5 ┤        ****  +++        ",
            "    │   *****         +++++   ",
            "0.0 ┤***                   +++",
            "    └┬─────────┬────────┬─────",
            "     10:00   10:02    10:04",
            "** {job=\"a\"}",
            "++ {job=\"b\"}",
        ]
        .join("\n")
            + "\n";
        assert_eq!(got, expected, "\n{got}");
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(y_ticks(0.0, 5.0, 2), vec![0.0, 2.5, 5.0]);
        assert_eq!(y_ticks(3.0, 97.0, 4), vec![0.0, 25.0, 50.0, 75.0, 100.0]);
        assert_eq!(y_ticks(3.0, 97.0, 2), vec![0.0, 50.0, 100.0]);
        let t = y_ticks(0.12, 0.48, 4);
        assert_eq!(t.len(), 5);
        assert!((t[0] - 0.1).abs() < 1e-12 && (t[4] - 0.5).abs() < 1e-12);
        // A flat series gets a range around its value; no tick from float noise.
        assert_eq!(y_ticks(7.0, 7.0, 2), vec![6.0, 7.0, 8.0]);
        assert_eq!(y_ticks(1.0, 1.0, 2).len(), 3);
        assert_eq!(humanize(2.5, 2.5, 5.0), "2.5");
        assert_eq!(humanize(75.0, 25.0, 100.0), "75");
        assert_eq!(humanize(0.30000000000000004, 0.1, 0.5), "0.3");
        assert_eq!(humanize(2_500_000.0, 500_000.0, 3e6), "2.5M");
        assert_eq!(humanize(1500.0, 500.0, 2000.0), "1.5k");
        // The axis' unit applies to every tick, small or zero.
        assert_eq!(humanize(500.0, 500.0, 2000.0), "0.5k");
        assert_eq!(humanize(0.0, 0.0002, 0.0006), "0.0m");
        assert_eq!(humanize(0.002, 0.001, 0.004), "2m");
        assert_eq!(humanize(0.05, 0.01, 0.1), "0.05");
        assert_eq!(humanize(-0.0, 1.0, 2.0), "0");
        let t = 1_795_168_800_000;
        assert_eq!(time_label(t, 300, 30), "10:00:00");
        assert_eq!(time_label(t, 3600, 600), "10:00");
        assert_eq!(time_label(t, 7 * 86_400, 21_600), "11-20 10:00");
        assert_eq!(time_label(t, 365 * 86_400, 2_592_000), "2026-11-20");
    }

    #[test]
    fn gaps_and_non_finite_values_are_not_joined() {
        let m = 60_000;
        // Minutes 0 and 1, NaN at 2, 3 alone, nothing at 4, +Inf at 5: two runs, flat at 1.
        let s = series(
            &[],
            &[
                (0, 1.0),
                (m, 1.0),
                (2 * m, f64::NAN),
                (3 * m, 1.0),
                (5 * m, f64::INFINITY),
            ],
        );
        let got = render(&[s], 0, 5 * m, m, &plain(40, 3));
        let row = got
            .lines()
            .find(|r| r.chars().any(|c| ('\u{2801}'..='\u{28ff}').contains(&c)))
            .unwrap();
        let cells: Vec<bool> = row
            .chars()
            .skip_while(|&c| c != '┤' && c != '│')
            .skip(1)
            .map(|c| c != ' ')
            .collect();
        let cols = cells.len();
        // Braille: 2 dots per cell; minute k is at dot round(k / 5 * (2 cols - 1)).
        let cell = |k: f64| ((k / 5.0 * (2 * cols - 1) as f64).round() as usize) / 2;
        assert!((cell(0.0)..=cell(1.0)).all(|c| cells[c]), "{got}");
        assert!((cell(1.0) + 1..cell(3.0)).all(|c| !cells[c]), "{got}");
        assert!(cells[cell(3.0)], "{got}");
        assert!((cell(3.0) + 1..cols).all(|c| !cells[c]), "{got}");
        assert!(got.ends_with("⠤⠤ {}\n"), "{got}");
        let empty = render(&[series(&[], &[(0, f64::NAN)])], 0, m, m, &plain(40, 4));
        assert!(empty.starts_with("no data points"));
    }

    #[test]
    fn extreme_inputs_do_not_panic() {
        let huge = series(&[], &[(0, -f64::MAX), (60_000, f64::MAX)]);
        let tiny = series(&[], &[(0, 5e-324), (60_000, 1e-320)]);
        // A point outside the query range, and a range reaching both ends of time.
        let outside = series(&[], &[(-1_000_000_000_000, 1.0), (0, 2.0)]);
        for (s, start, end) in [
            (huge, 0, 60_000),
            (tiny, 0, 60_000),
            (outside, 0, 60_000),
            (
                series(&[], &[(0, 1.0)]),
                -9_200_000_000_000_000_000,
                9_200_000_000_000_000_000,
            ),
        ] {
            let got = render(&[s], start, end, 60_000, &plain(usize::MAX, usize::MAX));
            assert!(got.lines().count() <= MAX_PLOT_ROWS + 3, "{}", got.len());
        }
        let got = render(&[], 0, 0, 1, &plain(0, 0));
        assert!(got.starts_with("no data points"));
    }

    #[test]
    fn many_series_cap_the_legend_and_colour_only_when_asked() {
        let all: Vec<RangeSeries> = (0..13)
            .map(|i| {
                let v = i.to_string();
                series(&[("i", &v)], &[(0, i as f64), (60_000, i as f64 + 1.0)])
            })
            .collect();
        let got = render(&all, 0, 60_000, 60_000, &plain(60, 8));
        assert!(got.ends_with("+3 more\n"), "{got}");
        assert_eq!(got.lines().filter(|l| l.contains("{i=")).count(), 10);
        assert!(!got.contains('\x1b'));
        let opts = PlotOptions {
            color: true,
            ..plain(60, 8)
        };
        let coloured = render(&all, 0, 60_000, 60_000, &opts);
        assert!(
            coloured.contains("\x1b[34m━━\x1b[0m {i=\"0\"}"),
            "{coloured}"
        );
        assert!(coloured.contains('\x1b'));
    }
}
