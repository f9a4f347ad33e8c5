//! Renders an outage demo's timeline as a standalone SVG picture: the local stand-in for the
//! Step Functions console's execution view, plus the consumer mapping, the alarm and the queue
//! depth on one shared time axis.
//!
//! Pure: plain data in, SVG text out (written by hand, no dependencies). Every piece of text is
//! XML-escaped, and characters XML 1.0 cannot carry are replaced, so any input gives a
//! well-formed document. All times are seconds since the demo's start.
//!
//! Layout, top to bottom: the title; a band of marker labels (rotated 45° so close markers
//! don't collide); one lane per execution with a bar per state (overlapping states, as in a
//! Parallel or Map state, stack in sub-rows); the consumer mapping lane; the alarm lane; a
//! queue-depth chart (visible as an area, in flight and delayed as lines, with its legend and
//! y maximum); the time axis; the colour legend. Marker lines cross every lane. Each bar,
//! segment and marker carries a `<title>` child, which browsers show as a tooltip.

use std::fmt::Write as _;

/// `write!` into a `String`, which cannot fail.
macro_rules! push {
    ($out:expr, $($arg:tt)*) => {{
        let _ = write!($out, $($arg)*);
    }};
}

/// One workflow state of an execution, from entered to exited.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub name: String,
    pub start: f64,
    pub end: f64,
}

/// A string value that holds from `at` until the next sample (a step function over time).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub at: f64,
    pub value: String,
}

/// A numeric sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub at: f64,
    pub value: f64,
}

/// An instant event: "outage on", "heal", "alarm ALARM", "probe failed", ...
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub at: f64,
    pub label: String,
}

/// Everything one picture shows. Times are seconds since the demo's start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timeline {
    pub title: String,
    /// Right edge of the time axis. When it is not a positive number, the latest time in the
    /// data is used instead (or 1 s when there is none).
    pub end: f64,
    /// Per Step Functions execution (short name), its states.
    pub executions: Vec<(String, Vec<Span>)>,
    /// Consumer mapping state over time: "Enabled", "Disabled", "Enabling", "Disabling", ...
    pub mapping: Vec<Sample>,
    /// Alarm state over time: "OK", "ALARM", "INSUFFICIENT_DATA".
    pub alarm: Vec<Sample>,
    pub visible: Vec<Point>,
    pub in_flight: Vec<Point>,
    pub delayed: Vec<Point>,
    pub markers: Vec<Marker>,
}

// ---- geometry (pixels) ----

const WIDTH: f64 = 1200.0;
/// Left of this: lane names. Right of `PLOT_RIGHT`: room for the last rotated marker labels
/// and the queue chart's legend.
const PLOT_LEFT: f64 = 180.0;
const PLOT_RIGHT: f64 = 1080.0;
const PLOT_W: f64 = PLOT_RIGHT - PLOT_LEFT;
const TITLE_Y: f64 = 26.0;
const BAND_TOP: f64 = 36.0;
/// Height of the marker label band; a label of `MARKER_LABEL_CHARS` at 45° fits in it.
const MARKER_BAND: f64 = 118.0;
const ROW_H: f64 = 20.0;
const BAR_H: f64 = 16.0;
const LANE_PAD: f64 = 3.0;
const STATE_LANE_H: f64 = 24.0;
const CHART_H: f64 = 140.0;
const SECTION_GAP: f64 = 10.0;
/// A bar never gets narrower than this, so zero-length states stay visible.
const MIN_BAR_W: f64 = 2.0;
/// Overlapping states of one execution stack in at most this many sub-rows.
const MAX_ROWS: usize = 6;
const FONT: f64 = 11.0;
/// Rough average advance of a sans-serif glyph, per pixel of font size.
const CHAR_W: f64 = 0.6;
const MARKER_LABEL_CHARS: usize = 24;
/// Minimum horizontal distance between two marker labels: at 45° they are then
/// 16 × cos 45° ≈ 11 px apart, about a line of 11 px text.
const MARKER_LABEL_GAP: f64 = 16.0;
/// A label is nudged at most this far right of its line; past that it is left out (the line
/// keeps its tooltip), so labels never drift away from their markers.
const MARKER_MAX_NUDGE: f64 = 24.0;
/// From this many markers on, their lines are drawn fainter so the lanes stay readable.
const MANY_MARKERS: usize = 60;
const LANE_NAME_CHARS: usize = 24;

// ---- colours ----

const GREEN: &str = "#54a24b";
const RED: &str = "#e45756";
const AMBER: &str = "#f2b134";
const GREY: &str = "#bab0ac";
const DARK_TEXT: &str = "#1f2d3d";
const WHITE_TEXT: &str = "#ffffff";
const VISIBLE_COLOUR: &str = "#4c78a8";
const IN_FLIGHT_COLOUR: &str = "#f58518";
const DELAYED_COLOUR: &str = "#9467bd";
/// Fill and text colour for state names of no known category, picked by a hash of the name.
const PALETTE: [(&str, &str); 8] = [
    ("#72b7b2", DARK_TEXT),
    ("#b279a2", WHITE_TEXT),
    ("#9d755d", WHITE_TEXT),
    ("#ff9da6", DARK_TEXT),
    ("#eeca3b", DARK_TEXT),
    ("#8e6c8a", WHITE_TEXT),
    ("#79706e", WHITE_TEXT),
    ("#17becf", DARK_TEXT),
];

/// A nice step for time axis ticks over `0..=range` seconds: the smallest of 0.1, 0.2, 0.5,
/// 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600 (then 3600 × 2, 5, 10, 20, 50, ...)
/// that gives at most 15 ticks, which leaves about 7 to 15. A range that is not a positive
/// finite number gets 1.
pub fn tick_step(range: f64) -> f64 {
    const STEPS: [f64; 16] = [
        0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0,
        3600.0,
    ];
    if !(range.is_finite() && range > 0.0) {
        return 1.0;
    }
    let fits = |step: f64| (range / step).floor() + 1.0 <= 15.0;
    if let Some(&step) = STEPS.iter().find(|&&s| fits(s)) {
        return step;
    }
    let mut decade = 3600.0;
    loop {
        for m in [2.0, 5.0, 10.0] {
            let step = decade * m;
            if fits(step) || !step.is_finite() {
                return step.min(f64::MAX);
            }
        }
        decade *= 10.0;
    }
}

/// The SVG picture of `timeline`, a complete standalone document.
pub fn render_svg(timeline: &Timeline) -> String {
    let scale = Scale::new(timeline);
    let mut svg = String::new();

    // Layout first: every vertical position, so grid and marker lines can span all lanes.
    // Tall enough for the longest marker label drawn.
    let longest = timeline
        .markers
        .iter()
        .filter(|m| scale.contains(m.at))
        .map(|m| marker_reach(&m.label))
        .fold(0.0, f64::max);
    let band_h = if longest > 0.0 {
        (longest + 12.0).min(MARKER_BAND)
    } else {
        0.0
    };
    let lanes_top = BAND_TOP + band_h + 6.0;
    let mut y = lanes_top;
    let mut exec_lanes = Vec::new();
    for (_, spans) in &timeline.executions {
        let (rows, slots) = pack_rows(spans, &scale);
        let h = rows as f64 * ROW_H + 2.0 * LANE_PAD;
        exec_lanes.push((y, h, slots));
        y += h;
    }
    if timeline.executions.is_empty() {
        y += ROW_H + 2.0 * LANE_PAD; // one empty lane saying so
    }
    let mapping_y = y + SECTION_GAP;
    let alarm_y = mapping_y + STATE_LANE_H;
    let chart_top = alarm_y + STATE_LANE_H + SECTION_GAP + 8.0;
    let axis_y = chart_top + CHART_H;

    // Background, title, grid.
    push!(
        svg,
        r##"<rect x="0" y="0" width="{}" height="100%" fill="#ffffff"/>"##,
        n(WIDTH)
    );
    let title = fit_text(&timeline.title, WIDTH - 40.0, 17.0).unwrap_or_default();
    push!(
        svg,
        r#"<text x="20" y="{}" font-size="17" font-weight="bold" fill="{DARK_TEXT}">{}</text>"#,
        n(TITLE_Y),
        esc(&title)
    );
    let step = tick_step(scale.domain);
    let ticks = ticks(scale.domain, step);
    svg.push_str(r##"<g stroke="#e8e8e8" stroke-width="1">"##);
    for &t in &ticks {
        let x = scale.x(t);
        push!(
            svg,
            r#"<line x1="{x}" y1="{}" x2="{x}" y2="{}"/>"#,
            n(lanes_top),
            n(axis_y),
            x = n(x)
        );
    }
    svg.push_str("</g>");

    // Execution lanes.
    for (i, ((name, spans), (lane_y, lane_h, slots))) in
        timeline.executions.iter().zip(&exec_lanes).enumerate()
    {
        if i % 2 == 0 {
            push!(
                svg,
                r##"<rect x="0" y="{}" width="{}" height="{}" fill="#f4f6f8" fill-opacity="0.8"/>"##,
                n(*lane_y),
                n(WIDTH),
                n(*lane_h)
            );
        }
        lane_name(&mut svg, name, *lane_y + LANE_PAD + ROW_H / 2.0);
        svg.push_str(r#"<g class="execution">"#);
        for (span, &slot) in spans.iter().zip(slots) {
            let (x, w) = scale.bar(span.start, span.end);
            let bar_y = lane_y + LANE_PAD + slot as f64 * ROW_H + (ROW_H - BAR_H) / 2.0;
            let (fill, text) = state_colours(&span.name);
            // The tooltip tells the times as given, also when the bar is clipped.
            let tip = format!(
                "{} ({}–{} s, {} s)",
                span.name,
                secs(span.start),
                secs(span.end),
                secs(span.end - span.start)
            );
            bar(
                &mut svg,
                "state",
                (x, bar_y, w, BAR_H),
                fill,
                text,
                &span.name,
                &tip,
            );
        }
        svg.push_str("</g>");
    }
    if timeline.executions.is_empty() {
        push!(
            svg,
            r##"<text x="{}" y="{}" font-size="12" fill="#888888" font-style="italic">no executions</text>"##,
            n(PLOT_LEFT + 4.0),
            n(lanes_top + LANE_PAD + ROW_H / 2.0 + 4.0)
        );
    }

    // Mapping and alarm lanes.
    state_lane(
        &mut svg,
        &scale,
        "consumer mapping",
        mapping_y,
        &timeline.mapping,
        mapping_colours,
    );
    state_lane(
        &mut svg,
        &scale,
        "alarm",
        alarm_y,
        &timeline.alarm,
        alarm_colours,
    );

    queue_chart(&mut svg, &scale, timeline, chart_top, axis_y);

    // Time axis.
    push!(
        svg,
        r##"<g stroke="#444444" stroke-width="1"><line x1="{}" y1="{y}" x2="{}" y2="{y}"/>"##,
        n(PLOT_LEFT),
        n(PLOT_RIGHT),
        y = n(axis_y)
    );
    for &t in &ticks {
        push!(
            svg,
            r#"<line x1="{x}" y1="{}" x2="{x}" y2="{}"/>"#,
            n(axis_y),
            n(axis_y + 5.0),
            x = n(scale.x(t))
        );
    }
    svg.push_str("</g>");
    push!(
        svg,
        r##"<g font-size="{}" fill="#444444" text-anchor="middle">"##,
        n(FONT)
    );
    for &t in &ticks {
        push!(
            svg,
            r#"<text x="{}" y="{}">{}</text>"#,
            n(scale.x(t)),
            n(axis_y + 17.0),
            tick_label(t, step)
        );
    }
    push!(
        svg,
        r#"<text x="{}" y="{}" font-size="12">t (s)</text></g>"#,
        n(PLOT_LEFT + PLOT_W / 2.0),
        n(axis_y + 34.0)
    );

    let notes = markers(&mut svg, &scale, &timeline.markers, lanes_top, axis_y);

    let bottom = legend(&mut svg, axis_y + 52.0, &notes);
    let height = (bottom + 14.0).ceil();

    let mut doc = String::with_capacity(svg.len() + 400);
    push!(doc, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    doc.push('\n');
    push!(
        doc,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="Helvetica, Arial, sans-serif">"#,
        w = n(WIDTH),
        h = n(height)
    );
    push!(doc, "<title>{}</title>", esc(&timeline.title));
    doc.push_str(&svg);
    doc.push_str("</svg>\n");
    doc
}

/// Maps times onto the plot's x range. Times are clipped to `0..=domain`; NaN counts as 0.
struct Scale {
    domain: f64,
}

impl Scale {
    fn new(t: &Timeline) -> Self {
        if t.end.is_finite() && t.end > 0.0 {
            return Scale { domain: t.end };
        }
        let spans = t
            .executions
            .iter()
            .flat_map(|(_, spans)| spans.iter().flat_map(|s| [s.start, s.end]));
        let samples = t.mapping.iter().chain(&t.alarm).map(|s| s.at);
        let points = t
            .visible
            .iter()
            .chain(&t.in_flight)
            .chain(&t.delayed)
            .map(|p| p.at);
        let markers = t.markers.iter().map(|m| m.at);
        let latest = spans
            .chain(samples)
            .chain(points)
            .chain(markers)
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max);
        Scale {
            domain: if latest > 0.0 { latest } else { 1.0 },
        }
    }

    fn clip(&self, t: f64) -> f64 {
        if t.is_nan() {
            0.0
        } else {
            t.clamp(0.0, self.domain)
        }
    }

    fn contains(&self, t: f64) -> bool {
        (0.0..=self.domain).contains(&t)
    }

    /// Clipped `(low, high)` of an interval given either way round.
    fn ordered(&self, a: f64, b: f64) -> (f64, f64) {
        let (a, b) = (self.clip(a), self.clip(b));
        (a.min(b), a.max(b))
    }

    fn x(&self, t: f64) -> f64 {
        PLOT_LEFT + (self.clip(t) / self.domain).clamp(0.0, 1.0) * PLOT_W
    }

    /// `(x, width)` of a bar from `a` to `b`, at least `MIN_BAR_W` wide and inside the plot.
    fn bar(&self, a: f64, b: f64) -> (f64, f64) {
        let (a, b) = self.ordered(a, b);
        let (mut x0, mut x1) = (self.x(a), self.x(b));
        if x1 - x0 < MIN_BAR_W {
            x1 = (x0 + MIN_BAR_W).min(PLOT_RIGHT);
            x0 = x1 - MIN_BAR_W;
        }
        (x0, x1 - x0)
    }
}

/// Sub-row of each span so that spans overlapping in time don't cover each other, and the
/// number of sub-rows (at least 1, at most `MAX_ROWS`; past that, the row that frees first).
fn pack_rows(spans: &[Span], scale: &Scale) -> (usize, Vec<usize>) {
    let eps = scale.domain * 1e-9;
    let interval = |s: &Span| scale.ordered(s.start, s.end);
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.sort_by(|&a, &b| interval(&spans[a]).0.total_cmp(&interval(&spans[b]).0));
    let mut row_ends: Vec<f64> = Vec::new();
    let mut slots = vec![0; spans.len()];
    for i in order {
        let (start, end) = interval(&spans[i]);
        let row = match row_ends.iter().position(|&e| start >= e - eps) {
            Some(row) => row,
            None if row_ends.len() < MAX_ROWS => {
                row_ends.push(f64::NEG_INFINITY);
                row_ends.len() - 1
            }
            None => (0..row_ends.len())
                .min_by(|&a, &b| row_ends[a].total_cmp(&row_ends[b]))
                .unwrap_or(0),
        };
        row_ends[row] = row_ends[row].max(end);
        slots[i] = row;
    }
    (row_ends.len().max(1), slots)
}

/// The tick times from 0 up to `domain`.
fn ticks(domain: f64, step: f64) -> Vec<f64> {
    let count = (domain / step + 1e-9).floor().clamp(0.0, 100.0) as usize;
    (0..=count).map(|i| i as f64 * step).collect()
}

fn tick_label(t: f64, step: f64) -> String {
    if step < 1.0 {
        format!("{t:.1}")
    } else {
        num(t)
    }
}

/// A number for people: integers without decimals, others with up to 2.
fn num(v: f64) -> String {
    if v.abs() >= 1e9 {
        format!("{v:.2e}")
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn secs(v: f64) -> String {
    if v.abs() >= 1e9 {
        format!("{v:.2e}")
    } else {
        format!("{v:.1}")
    }
}

/// A coordinate: one decimal is plenty at this size.
fn n(v: f64) -> String {
    let v = if v.is_finite() { v } else { 0.0 };
    format!("{v:.1}")
}

/// Text escaped for XML content and attribute values. Characters that XML 1.0 cannot carry
/// become U+FFFD, line breaks and tabs become spaces.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(' '),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

fn text_width(chars: usize, font: f64) -> f64 {
    chars as f64 * font * CHAR_W
}

/// `text` as it fits in `width` pixels at `font` size: whole, cut with an ellipsis, or `None`
/// when not even a few characters fit.
fn fit_text(text: &str, width: f64, font: f64) -> Option<String> {
    let room = ((width - 6.0) / (font * CHAR_W)).floor();
    if room < 1.0 {
        return None;
    }
    let count = text.chars().count();
    if count as f64 <= room {
        return Some(text.to_string());
    }
    if room < 4.0 {
        return None;
    }
    let mut cut: String = text.chars().take(room as usize - 1).collect();
    cut.push('…');
    Some(cut)
}

fn truncate(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        text.to_string()
    } else {
        let mut cut: String = text.chars().take(chars.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Fill and text colour of a workflow state, by category of its name: waits and backoffs
/// light, probes blue, fail/give-up dark red, opening red, closing green, others by a hash.
fn state_colours(name: &str) -> (&'static str, &'static str) {
    let l = name.to_lowercase();
    if l.contains("wait") || l.contains("backoff") {
        ("#c9d8ea", DARK_TEXT)
    } else if l.contains("probe") {
        ("#3b6ea5", WHITE_TEXT)
    } else if l.contains("fail") || l.contains("giveup") || l.contains("gaveup") {
        ("#8c2d2d", WHITE_TEXT)
    } else if l.contains("open") {
        (RED, WHITE_TEXT)
    } else if l.contains("close") {
        (GREEN, WHITE_TEXT)
    } else {
        PALETTE[(fnv1a(name) % PALETTE.len() as u64) as usize]
    }
}

fn mapping_colours(value: &str) -> (&'static str, &'static str) {
    match value {
        "Enabled" => (GREEN, WHITE_TEXT),
        "Disabled" => (RED, WHITE_TEXT),
        v if v.ends_with("ing") => (AMBER, DARK_TEXT),
        _ => (GREY, DARK_TEXT),
    }
}

fn alarm_colours(value: &str) -> (&'static str, &'static str) {
    match value {
        "OK" => (GREEN, WHITE_TEXT),
        "ALARM" => (RED, WHITE_TEXT),
        _ => (GREY, DARK_TEXT),
    }
}

fn marker_colour(label: &str) -> &'static str {
    let l = label.to_lowercase();
    if l.contains("outage") {
        "#d62728"
    } else if l.contains("heal") || l.contains("recover") {
        "#2ca02c"
    } else if l.contains("alarm") {
        "#ff7f0e"
    } else if l.contains("fail") {
        "#8c2d2d"
    } else {
        "#555555"
    }
}

/// A lane's name in the left column, vertically centred on `mid_y`.
fn lane_name(svg: &mut String, name: &str, mid_y: f64) {
    lane_name_at(svg, name, PLOT_LEFT - 8.0, mid_y);
}

/// A lane's name right-aligned at `right`.
fn lane_name_at(svg: &mut String, name: &str, right: f64, mid_y: f64) {
    push!(
        svg,
        r#"<text x="{}" y="{}" font-size="12" text-anchor="end" fill="{DARK_TEXT}">{}<title>{}</title></text>"#,
        n(right),
        n(mid_y + 4.0),
        esc(&truncate(name, LANE_NAME_CHARS)),
        esc(name)
    );
}

/// One rect with a tooltip, and the label on it when the label fits.
fn bar(
    svg: &mut String,
    class: &str,
    (x, y, w, h): (f64, f64, f64, f64),
    fill: &str,
    text_colour: &str,
    label: &str,
    tip: &str,
) {
    push!(
        svg,
        r##"<rect class="{class}" x="{}" y="{}" width="{}" height="{}" rx="2" fill="{fill}" stroke="#ffffff" stroke-width="0.5"><title>{}</title></rect>"##,
        n(x),
        n(y),
        n(w),
        n(h),
        esc(tip)
    );
    if let Some(text) = fit_text(label, w, FONT).filter(|t| !t.is_empty()) {
        push!(
            svg,
            r#"<text x="{}" y="{}" font-size="{}" fill="{text_colour}" pointer-events="none">{}</text>"#,
            n(x + 3.0),
            n(y + h / 2.0 + 4.0),
            n(FONT),
            esc(&text)
        );
    }
}

/// A lane of a string value over time: each sample holds until the next one (or the end).
fn state_lane(
    svg: &mut String,
    scale: &Scale,
    name: &str,
    y: f64,
    samples: &[Sample],
    colours: fn(&str) -> (&'static str, &'static str),
) {
    push!(
        svg,
        r##"<rect x="{}" y="{}" width="{}" height="{}" fill="#f4f6f8"/>"##,
        n(PLOT_LEFT),
        n(y + 2.0),
        n(PLOT_W),
        n(STATE_LANE_H - 4.0)
    );
    lane_name(svg, name, y + STATE_LANE_H / 2.0);
    let mut sorted: Vec<&Sample> = samples.iter().filter(|s| !s.at.is_nan()).collect();
    sorted.sort_by(|a, b| a.at.total_cmp(&b.at));
    push!(svg, r#"<g class="lane">"#);
    for (i, sample) in sorted.iter().enumerate() {
        if sample.at > scale.domain {
            break;
        }
        let until = sorted.get(i + 1).map_or(scale.domain, |next| next.at);
        if until < 0.0 {
            continue; // superseded before the axis starts
        }
        let (x, w) = scale.bar(sample.at, until);
        let (fill, text) = colours(&sample.value);
        let tip = format!(
            "{}: {} from {} s to {} s",
            name,
            sample.value,
            secs(sample.at),
            secs(until)
        );
        bar(
            svg,
            "segment",
            (x, y + 3.0, w, STATE_LANE_H - 6.0),
            fill,
            text,
            &sample.value,
            &tip,
        );
    }
    svg.push_str("</g>");
}

/// Finite samples inside the axis, values clamped at 0, in time order.
fn series(points: &[Point], scale: &Scale) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = points
        .iter()
        .filter(|p| p.at.is_finite() && scale.contains(p.at) && p.value.is_finite())
        .map(|p| (p.at, p.value.max(0.0)))
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The smallest of 1, 1.5, 2, 2.5, 3, 4, 5, 6, 8 × 10^k at or above `v`, so the chart uses
/// most of its height (1 for nothing to show).
fn nice_ceil(v: f64) -> f64 {
    if !(v.is_finite() && v > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0]
        .iter()
        .map(|m| m * p)
        .find(|&c| c >= v && c.is_finite())
        .unwrap_or(v)
}

fn queue_chart(svg: &mut String, scale: &Scale, t: &Timeline, top: f64, bottom: f64) {
    let all = [
        ("visible", VISIBLE_COLOUR, series(&t.visible, scale)),
        ("in flight", IN_FLIGHT_COLOUR, series(&t.in_flight, scale)),
        ("delayed", DELAYED_COLOUR, series(&t.delayed, scale)),
    ];
    let max = all
        .iter()
        .flat_map(|(_, _, s)| s.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    let y_max = nice_ceil(max);
    let y = |v: f64| bottom - (v / y_max).clamp(0.0, 1.0) * CHART_H;

    // Left of the y labels, which sit next to the axis.
    lane_name_at(svg, "queue depth", PLOT_LEFT - 48.0, top + CHART_H / 2.0);
    push!(
        svg,
        r##"<g stroke="#cccccc" stroke-width="1" stroke-dasharray="2 3"><line x1="{l}" y1="{a}" x2="{r}" y2="{a}"/><line x1="{l}" y1="{b}" x2="{r}" y2="{b}"/></g>"##,
        l = n(PLOT_LEFT),
        r = n(PLOT_RIGHT),
        a = n(top),
        b = n(y(y_max / 2.0))
    );
    push!(
        svg,
        r##"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#444444" stroke-width="1"/>"##,
        n(top),
        n(bottom),
        x = n(PLOT_LEFT)
    );
    push!(
        svg,
        r##"<g font-size="{}" fill="#444444" text-anchor="end"><text x="{x}" y="{}">{}</text><text x="{x}" y="{}">{}</text><text x="{x}" y="{}">0</text></g>"##,
        n(FONT),
        n(top + 4.0),
        num(y_max),
        n(y(y_max / 2.0) + 4.0),
        num(y_max / 2.0),
        n(bottom),
        x = n(PLOT_LEFT - 6.0)
    );

    for (i, (name, colour, points)) in all.iter().enumerate() {
        let coords: Vec<(f64, f64)> = points.iter().map(|&(t, v)| (scale.x(t), y(v))).collect();
        let joined = coords
            .iter()
            .map(|&(x, y)| format!("{},{}", n(x), n(y)))
            .collect::<Vec<_>>()
            .join(" ");
        push!(svg, r#"<g class="series"><title>{}</title>"#, esc(name));
        if i == 0 && coords.len() > 1 {
            let (first, last) = (coords[0].0, coords[coords.len() - 1].0);
            push!(
                svg,
                r#"<polygon points="{},{b} {joined} {},{b}" fill="{colour}" fill-opacity="0.22" stroke="none"/>"#,
                n(first),
                n(last),
                b = n(bottom)
            );
        }
        let dash = if i == 2 {
            r#" stroke-dasharray="5 3""#
        } else {
            ""
        };
        match coords.as_slice() {
            [] => {}
            [(x, y)] => push!(
                svg,
                r#"<circle cx="{}" cy="{}" r="2.5" fill="{colour}"/>"#,
                n(*x),
                n(*y)
            ),
            _ => push!(
                svg,
                r#"<polyline points="{joined}" fill="none" stroke="{colour}" stroke-width="1.8"{dash} stroke-linejoin="round"/>"#
            ),
        }
        svg.push_str("</g>");
        // Legend in the right margin.
        let ly = top + 10.0 + i as f64 * 18.0;
        push!(
            svg,
            r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="3"{dash}/><text x="{}" y="{}" font-size="{}" fill="{DARK_TEXT}">{}</text>"#,
            n(PLOT_RIGHT + 12.0),
            n(PLOT_RIGHT + 30.0),
            n(PLOT_RIGHT + 35.0),
            n(ly + 4.0),
            n(FONT),
            esc(name),
            ly = n(ly)
        );
    }
}

/// Dashed lines for the markers across all lanes, with labels rotated 45° in the band above
/// the lanes, nudged right (by at most `MARKER_MAX_NUDGE`) to keep `MARKER_LABEL_GAP` between
/// them. Returns notes for the legend about markers left unlabelled or undrawn.
fn markers(
    svg: &mut String,
    scale: &Scale,
    markers: &[Marker],
    lanes_top: f64,
    axis_y: f64,
) -> Vec<String> {
    let mut notes = Vec::new();
    let mut shown: Vec<&Marker> = markers.iter().filter(|m| scale.contains(m.at)).collect();
    let outside = markers.len() - shown.len();
    if outside > 0 {
        notes.push(format!(
            "{outside} marker(s) outside the time axis not drawn"
        ));
    }
    shown.sort_by(|a, b| a.at.total_cmp(&b.at));
    let label_y = lanes_top - 8.0;
    let opacity = if shown.len() >= MANY_MARKERS {
        "0.35"
    } else {
        "0.85"
    };
    let mut last_label_x = f64::NEG_INFINITY;
    let mut unlabelled = 0;
    for m in shown {
        let x = scale.x(m.at);
        let colour = marker_colour(&m.label);
        let label = truncate(&m.label, MARKER_LABEL_CHARS);
        let reach = marker_reach(&m.label);
        let label_x = x.max(last_label_x + MARKER_LABEL_GAP);
        push!(
            svg,
            r#"<g class="marker"><title>{} at {} s</title><line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="{colour}" stroke-width="1.3" stroke-dasharray="5 4" stroke-opacity="{opacity}"/>"#,
            esc(&m.label),
            secs(m.at),
            n(lanes_top - 4.0),
            n(axis_y),
            x = n(x)
        );
        if label_x - x <= MARKER_MAX_NUDGE && label_x + reach <= WIDTH - 4.0 {
            if label_x - x > 0.5 {
                push!(
                    svg,
                    r#"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{colour}" stroke-width="0.8"/>"#,
                    n(x),
                    n(lanes_top - 4.0),
                    n(label_x),
                    n(label_y)
                );
            }
            push!(
                svg,
                r#"<text transform="translate({},{}) rotate(-45)" font-size="{}" fill="{colour}">{}</text>"#,
                n(label_x),
                n(label_y),
                n(FONT),
                esc(&label)
            );
            last_label_x = label_x;
        } else {
            unlabelled += 1;
        }
        svg.push_str("</g>");
    }
    if unlabelled > 0 {
        notes.push(format!(
            "{unlabelled} marker label(s) omitted for lack of room (hover the lines)"
        ));
    }
    notes
}

/// How far right (and up) a marker's label reaches from its anchor: rotated 45°, as far as
/// it is long times cos 45°.
fn marker_reach(label: &str) -> f64 {
    let chars = label.chars().count().min(MARKER_LABEL_CHARS);
    text_width(chars, FONT) * std::f64::consts::FRAC_1_SQRT_2
}

enum Swatch {
    Fill(&'static str),
    Line(&'static str, bool),
}

/// Lays out legend entries left to right, wrapping at the canvas edge.
struct Legend<'a> {
    svg: &'a mut String,
    x: f64,
    y: f64,
}

impl Legend<'_> {
    const LEFT: f64 = 20.0;
    const LINE: f64 = 20.0;

    fn advance(&mut self, w: f64) {
        if self.x + w > WIDTH - 10.0 && self.x > Self::LEFT {
            self.x = Self::LEFT;
            self.y += Self::LINE;
        }
    }

    fn header(&mut self, text: &str) {
        let w = text_width(text.chars().count(), FONT) + 14.0;
        self.advance(w);
        push!(
            self.svg,
            r#"<text x="{}" y="{}" font-size="{}" font-weight="bold" fill="{DARK_TEXT}">{}</text>"#,
            n(self.x),
            n(self.y + 4.0),
            n(FONT),
            esc(text)
        );
        self.x += w;
    }

    fn item(&mut self, swatch: Swatch, text: &str) {
        let w = 18.0 + text_width(text.chars().count(), FONT) + 16.0;
        self.advance(w);
        match swatch {
            Swatch::Fill(fill) => push!(
                self.svg,
                r#"<rect x="{}" y="{}" width="14" height="10" rx="2" fill="{fill}"/>"#,
                n(self.x),
                n(self.y - 5.0)
            ),
            Swatch::Line(colour, dashed) => push!(
                self.svg,
                r#"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="{colour}" stroke-width="2"{}/>"#,
                n(self.x),
                n(self.x + 14.0),
                if dashed {
                    r#" stroke-dasharray="4 3""#
                } else {
                    ""
                },
                y = n(self.y)
            ),
        }
        push!(
            self.svg,
            r#"<text x="{}" y="{}" font-size="{}" fill="{DARK_TEXT}">{}</text>"#,
            n(self.x + 18.0),
            n(self.y + 4.0),
            n(FONT),
            esc(text)
        );
        self.x += w;
    }

    fn break_line(&mut self) {
        self.x = Self::LEFT;
        self.y += Self::LINE;
    }
}

/// The colour legend from `top`; returns the y of its last line.
fn legend(svg: &mut String, top: f64, notes: &[String]) -> f64 {
    svg.push_str(r#"<g class="legend">"#);
    let mut l = Legend {
        svg,
        x: Legend::LEFT,
        y: top,
    };
    l.header("states");
    l.item(Swatch::Fill(state_colours("Probe").0), "Probe…");
    l.item(Swatch::Fill(state_colours("Wait").0), "Wait… / …Backoff…");
    l.item(Swatch::Fill(state_colours("Open").0), "…Open…");
    l.item(Swatch::Fill(state_colours("Close").0), "…Close…");
    l.item(Swatch::Fill(state_colours("Fail").0), "…Fail… / GiveUp");
    l.item(Swatch::Fill(PALETTE[0].0), "others: colour by name");
    l.break_line();
    l.header("mapping");
    l.item(Swatch::Fill(GREEN), "Enabled");
    l.item(Swatch::Fill(RED), "Disabled");
    l.item(Swatch::Fill(AMBER), "Enabling / Disabling / …");
    l.header("alarm");
    l.item(Swatch::Fill(GREEN), "OK");
    l.item(Swatch::Fill(RED), "ALARM");
    l.item(Swatch::Fill(GREY), "other");
    l.header("markers");
    l.item(Swatch::Line(marker_colour("outage"), true), "outage");
    l.item(Swatch::Line(marker_colour("heal"), true), "heal / healthy");
    l.item(Swatch::Line(marker_colour("alarm"), true), "alarm");
    l.item(Swatch::Line(marker_colour("fail"), true), "failed");
    l.item(Swatch::Line(marker_colour(""), true), "other");
    for note in notes {
        l.break_line();
        push!(
            l.svg,
            r##"<text x="{}" y="{}" font-size="{}" font-style="italic" fill="#666666">{}</text>"##,
            n(l.x),
            n(l.y + 4.0),
            n(FONT),
            esc(note)
        );
    }
    let bottom = l.y + 6.0;
    svg.push_str("</g>");
    bottom
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(svg: &str) -> roxmltree::Document<'_> {
        roxmltree::Document::parse(svg)
            .unwrap_or_else(|e| panic!("not well-formed XML: {e}\n{svg}"))
    }

    fn num_attr(node: roxmltree::Node, name: &str) -> Option<f64> {
        node.attribute(name).map(|v| {
            v.parse::<f64>().unwrap_or_else(|_| {
                panic!(
                    "{name}={v:?} on <{}> is not a number",
                    node.tag_name().name()
                )
            })
        })
    }

    /// Well-formed, and every coordinate finite and inside the canvas. Returns the document's
    /// height.
    fn check(svg: &str) -> f64 {
        let doc = parse(svg);
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "svg");
        assert_eq!(num_attr(root, "width"), Some(WIDTH));
        let height = num_attr(root, "height").expect("height");
        assert!(height.is_finite() && height > 0.0);
        let inside = |what: &str, x: f64, y: f64| {
            assert!(
                x.is_finite()
                    && y.is_finite()
                    && (0.0..=WIDTH).contains(&x)
                    && (0.0..=height).contains(&y),
                "{what} ({x}, {y}) outside the {WIDTH}×{height} canvas"
            );
        };
        for node in root.descendants().filter(|n| n.is_element() && *n != root) {
            let tag = node.tag_name().name().to_string();
            for (xa, ya) in [("x", "y"), ("x1", "y1"), ("x2", "y2"), ("cx", "cy")] {
                if node.attribute(xa).is_some() || node.attribute(ya).is_some() {
                    let x = num_attr(node, xa).unwrap_or(0.0);
                    let y = num_attr(node, ya).unwrap_or(0.0);
                    inside(&tag, x, y);
                }
            }
            let size = |a: &str| {
                node.attribute(a)
                    .filter(|v| !v.ends_with('%'))
                    .map(|_| num_attr(node, a).unwrap())
            };
            if let Some(w) = size("width") {
                assert!(w.is_finite() && w >= 0.0, "width {w}");
                inside(&tag, num_attr(node, "x").unwrap_or(0.0) + w, 0.0);
            }
            if let Some(h) = size("height") {
                assert!(h.is_finite() && h >= 0.0, "height {h}");
                inside(&tag, 0.0, num_attr(node, "y").unwrap_or(0.0) + h);
            }
            if let Some(points) = node.attribute("points") {
                for pair in points.split_whitespace() {
                    let (x, y) = pair.split_once(',').expect("x,y");
                    inside(&tag, x.parse().unwrap(), y.parse().unwrap());
                }
            }
            if let Some(transform) = node.attribute("transform") {
                let inner = transform
                    .strip_prefix("translate(")
                    .and_then(|t| t.split_once(')'))
                    .map(|(xy, _)| xy)
                    .expect("translate(x,y)");
                let (x, y) = inner.split_once(',').expect("x,y");
                inside(&tag, x.parse().unwrap(), y.parse().unwrap());
            }
        }
        height
    }

    fn span(name: &str, start: f64, end: f64) -> Span {
        Span {
            name: name.into(),
            start,
            end,
        }
    }

    fn sample(at: f64, value: &str) -> Sample {
        Sample {
            at,
            value: value.into(),
        }
    }

    fn marker(at: f64, label: &str) -> Marker {
        Marker {
            at,
            label: label.into(),
        }
    }

    /// `<rect class="state">`s in document order: (x, y, width, tooltip).
    fn state_rects(svg: &str) -> Vec<(f64, f64, f64, String)> {
        let doc = parse(svg);
        doc.descendants()
            .filter(|n| n.has_tag_name("rect") && n.attribute("class") == Some("state"))
            .map(|n| {
                let title = n
                    .children()
                    .find(|c| c.has_tag_name("title"))
                    .and_then(|t| t.text())
                    .expect("a <title> child")
                    .to_string();
                (
                    num_attr(n, "x").unwrap(),
                    num_attr(n, "y").unwrap(),
                    num_attr(n, "width").unwrap(),
                    title,
                )
            })
            .collect()
    }

    /// Runs the states of one execution back to back from `start`; returns them and the end.
    fn run(start: f64, states: &[(&str, f64)]) -> (Vec<Span>, f64) {
        let mut t = start;
        let spans = states
            .iter()
            .map(|&(name, d)| {
                let s = span(name, t, t + d);
                t += d;
                s
            })
            .collect();
        (spans, t)
    }

    const PROBE_CYCLE: [(&str, f64); 5] = [
        ("WaitBeforeProbe", 0.0), // duration set per cycle
        ("Probe", 0.8),
        ("ProbeVerdict", 0.05),
        ("NextBackoff", 0.3),
        ("BackoffOrGiveUp", 0.05),
    ];

    fn probes(waits: &[f64]) -> Vec<(&'static str, f64)> {
        waits
            .iter()
            .flat_map(|&w| {
                let mut cycle = PROBE_CYCLE.to_vec();
                cycle[0].1 = w;
                cycle
            })
            .collect()
    }

    const RECOVERY: [(&str, f64); 9] = [
        ("Probe", 0.8),
        ("ProbeVerdict", 0.05),
        ("StartRejitter", 0.6),
        ("WaitForBacklog", 15.0),
        ("CheckBacklog", 0.4),
        ("BacklogSpread", 0.05),
        ("StopRejitter", 0.5),
        ("CloseCircuit", 1.0),
        ("CircuitClosed", 0.0),
    ];

    /// A plausible demo: an outage from 20 s, healed near 167 s, handled by one execution with
    /// nine probes (a second execution finds the circuit already owned), then a short second
    /// outage from 215 s handled by a third execution with three probes.
    fn demo() -> Timeline {
        let mut markers = vec![marker(20.0, "outage on"), marker(38.0, "alarm ALARM")];
        let mut states = vec![("OpenCircuit", 1.2), ("IsCircuitOpen", 0.1)];
        states.extend(probes(&[5.0, 10.0, 15.0, 15.0, 15.0, 15.0, 15.0, 15.0]));
        states.push(("WaitBeforeProbe", 15.0));
        states.extend(RECOVERY);
        let (a, a_end) = run(40.0, &states);
        let (b, _) = run(
            41.5,
            &[("IsCircuitOpen", 0.1), ("AnotherExecutionOwnsCircuit", 0.0)],
        );
        let mut states = vec![("OpenCircuit", 1.0), ("IsCircuitOpen", 0.1)];
        states.extend(probes(&[5.0, 5.0]));
        states.push(("WaitBeforeProbe", 10.0));
        states.extend(RECOVERY);
        let (c, c_end) = run(224.0, &states);
        for s in a.iter().chain(&c).filter(|s| s.name == "Probe") {
            markers.push(marker(s.end, "probe failed"));
        }
        // The last probe of each execution is the healthy one.
        for spans in [&a, &c] {
            let last = spans.iter().rfind(|s| s.name == "Probe").unwrap();
            markers.retain(|m| m.at != last.end);
            markers.push(marker(last.end, "probe healthy"));
            markers.push(marker(last.start - 4.0, "heal"));
        }
        markers.push(marker(215.0, "outage on <fast> & \"short\" ✓"));
        markers.push(marker(a_end + 15.0, "alarm OK"));
        let a_close = a_end - 1.0;
        let c_close = c_end - 1.0;
        let mapping = vec![
            sample(0.0, "Enabled"),
            sample(40.6, "Disabling"),
            sample(41.2, "Disabled"),
            sample(a_close, "Enabling"),
            sample(a_close + 0.8, "Enabled"),
            sample(224.5, "Disabling"),
            sample(225.0, "Disabled"),
            sample(c_close, "Enabling"),
            sample(c_close + 0.8, "Enabled"),
        ];
        let alarm = vec![
            sample(0.0, "INSUFFICIENT_DATA"),
            sample(10.0, "OK"),
            sample(38.0, "ALARM"),
            sample(a_end + 15.0, "OK"),
            sample(222.0, "ALARM"),
            sample(c_end + 20.0, "OK"),
        ];
        let (mut visible, mut in_flight, mut delayed) = (vec![], vec![], vec![]);
        let mut backlog: f64 = 0.0;
        for i in 0..=150 {
            let t = i as f64 * 2.0;
            let open = (41.2..a_close).contains(&t) || (225.0..c_close).contains(&t);
            let failing = (20.0..41.2).contains(&t) || (215.0..225.0).contains(&t);
            let rejitter = a
                .iter()
                .chain(&c)
                .any(|s| s.name == "WaitForBacklog" && (s.start..s.end + 20.0).contains(&t));
            backlog = if open {
                backlog + 4.0
            } else if failing {
                backlog + 2.0
            } else {
                (backlog * 0.75 - 2.0).max(2.0)
            };
            let spread = if rejitter { backlog * 0.6 } else { 0.0 };
            visible.push(Point {
                at: t,
                value: (backlog - spread).round(),
            });
            in_flight.push(Point {
                at: t,
                value: if open {
                    0.0
                } else if failing {
                    24.0
                } else {
                    8.0
                },
            });
            delayed.push(Point {
                at: t,
                value: spread.round(),
            });
        }
        Timeline {
            title: "Outage demo — orders <local> & \"MiniStack\"".into(),
            end: 300.0,
            executions: vec![
                ("exec-7f3a".into(), a),
                ("exec-91c2".into(), b),
                ("exec-d40e".into(), c),
            ],
            mapping,
            alarm,
            visible,
            in_flight,
            delayed,
            markers,
        }
    }

    #[test]
    fn demo_is_well_formed_and_inside_the_canvas() {
        let t = demo();
        let svg = render_svg(&t);
        check(&svg);
        let probes = t
            .executions
            .iter()
            .flat_map(|(_, s)| s)
            .filter(|s| s.name == "Probe")
            .count();
        assert_eq!(probes, 12);
        if let Some(path) = std::env::var_os("TIMELINE_EXAMPLE_SVG") {
            std::fs::write(path, &svg).unwrap();
        }
    }

    #[test]
    fn every_span_gives_one_rect_carrying_its_name() {
        let t = demo();
        let rects = state_rects(&render_svg(&t));
        let spans: Vec<&Span> = t.executions.iter().flat_map(|(_, s)| s).collect();
        assert_eq!(rects.len(), spans.len());
        for (rect, span) in rects.iter().zip(spans) {
            assert!(
                rect.3.starts_with(&format!("{} (", span.name)),
                "{:?} for {}",
                rect.3,
                span.name
            );
        }
    }

    #[test]
    fn bars_are_proportional_to_time_and_clipped() {
        let t = Timeline {
            end: 100.0,
            executions: vec![(
                "x".into(),
                vec![
                    span("Quarter", 25.0, 50.0),
                    span("All", 0.0, 100.0),
                    span("PastEnd", 90.0, 250.0),
                    span("BeforeStart", -30.0, 10.0),
                    span("Instant", 40.0, 40.0),
                    span("Backwards", 60.0, 50.0),
                    span("AtEnd", 100.0, 100.0),
                    span("Beyond", 150.0, 160.0),
                ],
            )],
            ..Timeline::default()
        };
        let svg = render_svg(&t);
        check(&svg);
        let rects = state_rects(&svg);
        let expect = [
            (0.25, 0.25),
            (0.0, 1.0),
            (0.9, 0.1),
            (0.0, 0.1),
            (0.4, MIN_BAR_W / PLOT_W),
            (0.5, 0.1),
            (1.0 - MIN_BAR_W / PLOT_W, MIN_BAR_W / PLOT_W),
            (1.0 - MIN_BAR_W / PLOT_W, MIN_BAR_W / PLOT_W),
        ];
        assert_eq!(rects.len(), expect.len());
        for ((x, _, w, title), (fx, fw)) in rects.iter().zip(expect) {
            assert!(
                (x - (PLOT_LEFT + fx * PLOT_W)).abs() < 0.06,
                "{title}: x {x}"
            );
            assert!((w - fw * PLOT_W).abs() < 0.06, "{title}: width {w}");
        }
    }

    #[test]
    fn overlapping_states_stack_and_sequential_ones_share_a_row() {
        let t = Timeline {
            end: 10.0,
            executions: vec![(
                "par".into(),
                vec![
                    span("A", 0.0, 5.0),
                    span("B", 1.0, 3.0),
                    span("C", 5.0, 6.0),
                ],
            )],
            ..Timeline::default()
        };
        let rects = state_rects(&render_svg(&t));
        assert!(rects[1].1 > rects[0].1, "B overlaps A: next row");
        assert_eq!(rects[2].1, rects[0].1, "C follows A: same row");
    }

    #[test]
    fn labels_are_escaped() {
        let nasty = "a<b & \"c\" 'd'> Überprüfung 障害 ✓\u{1}";
        let t = Timeline {
            title: nasty.into(),
            end: 10.0,
            executions: vec![(nasty.into(), vec![span(nasty, 1.0, 9.0)])],
            mapping: vec![sample(0.0, nasty)],
            alarm: vec![sample(0.0, nasty)],
            markers: vec![marker(5.0, nasty)],
            ..Timeline::default()
        };
        let svg = render_svg(&t);
        check(&svg);
        assert!(!svg.contains("a<b"), "raw < in output");
        assert!(!svg.contains("& \""), "raw & in output");
        assert!(
            svg.contains("a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt; Überprüfung 障害 ✓\u{FFFD}")
        );
        let doc = parse(&svg);
        let cleaned = nasty.replace('\u{1}', "\u{FFFD}");
        let titles: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("title"))
            .filter_map(|n| n.text())
            .collect();
        assert_eq!(titles[0], cleaned, "document title");
        assert!(titles
            .iter()
            .any(|t| t.starts_with(&format!("{cleaned} ("))));
        assert!(titles.iter().any(|t| *t == format!("{cleaned} at 5.0 s")));
    }

    #[test]
    fn empty_timeline_is_still_a_picture() {
        for end in [0.0, -3.0, f64::NAN, f64::INFINITY, 42.0] {
            let t = Timeline {
                end,
                ..Timeline::default()
            };
            let svg = render_svg(&t);
            check(&svg);
            assert!(svg.contains("no executions"));
            assert!(state_rects(&svg).is_empty());
        }
    }

    #[test]
    fn without_an_end_the_axis_spans_the_data() {
        let t = Timeline {
            end: 0.0,
            executions: vec![("x".into(), vec![span("All", 0.0, 50.0)])],
            markers: vec![marker(f64::NAN, "nowhere")],
            ..Timeline::default()
        };
        let svg = render_svg(&t);
        check(&svg);
        let rects = state_rects(&svg);
        assert!((rects[0].2 - PLOT_W).abs() < 0.06);
        assert!(svg.contains("1 marker(s) outside the time axis"));
    }

    #[test]
    fn state_lanes_hold_each_value_until_the_next() {
        let t = Timeline {
            end: 100.0,
            // Unsorted on purpose, and one sample past the end.
            mapping: vec![
                sample(50.0, "Disabled"),
                sample(0.0, "Enabled"),
                sample(49.0, "Disabling"),
                sample(120.0, "Enabling"),
            ],
            ..Timeline::default()
        };
        let svg = render_svg(&t);
        check(&svg);
        let doc = parse(&svg);
        let segments: Vec<(f64, f64, &str)> = doc
            .descendants()
            .filter(|n| n.attribute("class") == Some("segment"))
            .map(|n| {
                (
                    num_attr(n, "x").unwrap(),
                    num_attr(n, "width").unwrap(),
                    n.attribute("fill").unwrap(),
                )
            })
            .collect();
        let px = |t: f64| t / 100.0 * PLOT_W;
        assert_eq!(segments.len(), 3);
        assert!((segments[0].1 - px(49.0)).abs() < 0.06);
        assert_eq!(segments[0].2, GREEN);
        assert!((segments[1].0 - (PLOT_LEFT + px(49.0))).abs() < 0.06);
        assert_eq!(segments[1].2, AMBER);
        assert!((segments[2].1 - px(50.0)).abs() < 0.06);
        assert_eq!(segments[2].2, RED);
    }

    #[test]
    fn hundreds_of_probes_and_markers_stay_valid() {
        let mut states = vec![];
        for _ in 0..300 {
            states.extend(probes(&[1.0]));
        }
        let (spans, end) = run(5.0, &states);
        let markers: Vec<Marker> = spans
            .iter()
            .filter(|s| s.name == "Probe")
            .map(|s| marker(s.end, "probe failed"))
            .collect();
        let t = Timeline {
            end,
            executions: vec![("exec-many".into(), spans)],
            markers,
            ..Timeline::default()
        };
        let svg = render_svg(&t);
        check(&svg);
        assert_eq!(state_rects(&svg).len(), 1500);
        assert!(svg.contains("marker label(s) omitted"));
    }

    #[test]
    fn tick_step_picks_a_nice_step() {
        for (range, step) in [
            (0.0, 1.0),
            (-5.0, 1.0),
            (f64::NAN, 1.0),
            (f64::INFINITY, 1.0),
            (1.0, 0.1),
            (5.0, 0.5),
            (10.0, 1.0),
            (14.0, 1.0),
            (15.0, 2.0),
            (60.0, 5.0),
            (100.0, 10.0),
            (200.0, 15.0),
            (240.0, 30.0),
            (300.0, 30.0),
            (600.0, 60.0),
            (1000.0, 120.0),
            (3600.0, 300.0),
            (86_400.0, 7200.0),
        ] {
            assert_eq!(tick_step(range), step, "range {range}");
        }
    }

    #[test]
    fn tick_step_gives_seven_to_fifteen_ticks() {
        let mut range = 1.5;
        while range < 1e7 {
            let count = ticks(range, tick_step(range)).len();
            assert!((7..=15).contains(&count), "range {range}: {count} ticks");
            range *= 1.07;
        }
    }

    fn time() -> impl Strategy<Value = f64> {
        prop_oneof![
            8 => -20.0f64..400.0,
            1 => Just(0.0),
            1 => Just(f64::NAN),
            1 => Just(f64::INFINITY),
            1 => Just(f64::NEG_INFINITY),
            1 => Just(1e12),
        ]
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[A-Za-z <>&\"'é✓障]{0,30}",
            any::<String>(),
            Just("Probe".to_string()),
            Just("WaitBeforeProbe".to_string()),
        ]
    }

    fn points() -> impl Strategy<Value = Vec<Point>> {
        let value = prop_oneof![
            4 => 0.0f64..1e4,
            1 => Just(f64::NAN),
            1 => Just(-1.0),
            1 => Just(1e300),
        ];
        proptest::collection::vec(
            (time(), value).prop_map(|(at, value)| Point { at, value }),
            0..30,
        )
    }

    fn timelines() -> impl Strategy<Value = Timeline> {
        let spans = proptest::collection::vec(
            (text(), time(), time()).prop_map(|(name, start, end)| Span { name, start, end }),
            0..20,
        );
        let samples = || {
            proptest::collection::vec(
                (time(), text()).prop_map(|(at, value)| Sample { at, value }),
                0..10,
            )
        };
        let markers = proptest::collection::vec(
            (time(), text()).prop_map(|(at, label)| Marker { at, label }),
            0..40,
        );
        (
            text(),
            prop_oneof![time(), Just(-1.0)],
            proptest::collection::vec((text(), spans), 0..5),
            samples(),
            samples(),
            (points(), points(), points()),
            markers,
        )
            .prop_map(
                |(
                    title,
                    end,
                    executions,
                    mapping,
                    alarm,
                    (visible, in_flight, delayed),
                    markers,
                )| {
                    Timeline {
                        title,
                        end,
                        executions,
                        mapping,
                        alarm,
                        visible,
                        in_flight,
                        delayed,
                        markers,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn random_timelines_give_well_formed_svg_inside_the_canvas(t in timelines()) {
            let svg = render_svg(&t);
            check(&svg);
            let spans = t.executions.iter().map(|(_, s)| s.len()).sum::<usize>();
            prop_assert_eq!(state_rects(&svg).len(), spans);
        }
    }
}
