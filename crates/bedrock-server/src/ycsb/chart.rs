//! The SVG chart of a YCSB report: throughput over time (top) and latency
//! percentiles per operation kind (bottom).
//!
//! Drawn with plotters' SVG backend and no font library: text goes into
//! the file as SVG `<text>` elements and the viewer renders it, so the
//! build needs neither fontconfig nor freetype.

use std::path::Path;

use plotters::prelude::*;

use super::report::{Phase, PhaseReport, YcsbReport};
use crate::bench::Latency;

/// Size of the chart in pixels.
const SIZE: (u32, u32) = (1100, 900);
/// Label of the throughput panel's y axis.
pub const THROUGHPUT_AXIS: &str = "operations/s";
/// Label of the latency panel's y axis.
pub const LATENCY_AXIS: &str = "latency (µs, log scale)";

const FONT: &str = "sans-serif";
const TOTAL_LABEL: &str = "run: all operations";
const LINE_COLORS: [RGBColor; 7] = [
    RGBColor(0, 0, 0),
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];
const PERCENTILE_COLORS: [RGBColor; 5] = [
    RGBColor(158, 202, 225),
    RGBColor(66, 146, 198),
    RGBColor(8, 81, 156),
    RGBColor(8, 48, 107),
    RGBColor(214, 39, 40),
];

/// Reads one percentile of a [`Latency`].
type Percentile = fn(&Latency) -> u64;
/// The bars of each group, with their legend names.
const PERCENTILES: [(&str, Percentile); 5] =
    [("p50", |l| l.p50), ("p95", |l| l.p95), ("p99", |l| l.p99), ("p99.9", |l| l.p999), ("max", |l| l.max)];

/// One line of the throughput panel.
struct Series {
    label: String,
    points: Vec<(f64, f64)>,
}

/// One group of bars in the latency panel.
struct Group {
    label: String,
    latency: Latency,
}

/// Writes the chart of `report` to `path`.
pub fn write_svg(report: &YcsbReport, path: &Path) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(&format!("YCSB workload {}", report.description), (FONT, 20))?;
    let (top, bottom) = root.split_vertically(SIZE.1 / 2 - 20);
    throughput_panel(&top, report)?;
    latency_panel(&bottom, report)?;
    root.present()?;
    Ok(())
}

/// Lines: the load's inserts, the run's total and, when the mix has more
/// than one kind, each kind; time runs on from the load into the run.
fn throughput_series(report: &YcsbReport) -> Vec<Series> {
    let mut series = Vec::new();
    let mut offset = 0.0;
    if let Some(load) = &report.load {
        series.push(Series { label: "load: insert".into(), points: points(load, 0.0, |p| p.ops) });
        offset = load.elapsed_secs;
    }
    let run = &report.run;
    series.push(Series { label: TOTAL_LABEL.into(), points: points(run, offset, |p| p.ops) });
    let kinds: Vec<_> = run.timeline.points.first().map(|p| p.by_op.keys().copied().collect()).unwrap_or_default();
    if kinds.len() > 1 {
        for kind in kinds {
            let pts = points(run, offset, |p| p.by_op.get(&kind).copied().unwrap_or(0));
            series.push(Series { label: format!("run: {}", kind.name()), points: pts });
        }
    }
    series
}

/// (middle of interval + `offset`, ops/s) for each interval of `phase`.
fn points(phase: &PhaseReport, offset: f64, count: impl Fn(&super::report::TimelinePoint) -> u64) -> Vec<(f64, f64)> {
    phase
        .timeline
        .points
        .iter()
        .filter(|p| p.secs > 0.0)
        .map(|p| (offset + p.start_secs + p.secs / 2.0, count(p) as f64 / p.secs))
        .collect()
}

fn throughput_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    report: &YcsbReport,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let series = throughput_series(report);
    let end = report.load.as_ref().map_or(0.0, |l| l.elapsed_secs) + report.run.elapsed_secs;
    let top = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption("Throughput over time", (FONT, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        // Headroom above the lines keeps the legend (upper right) off them.
        .build_cartesian_2d(0.0..end.max(0.5), 0.0..top * 1.5)?;
    chart
        .configure_mesh()
        .x_desc("time since start (s)")
        .y_desc(THROUGHPUT_AXIS)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    for (i, s) in series.into_iter().enumerate() {
        let color = LINE_COLORS[i % LINE_COLORS.len()];
        // The total is drawn wider and first, so that a kind with the same
        // counts (read in workload F, which includes the read-modify-write
        // reads) lies on it without hiding it.
        let width = if s.label == TOTAL_LABEL { 5 } else { 2 };
        chart
            .draw_series(LineSeries::new(s.points, color.stroke_width(width)))?
            .label(s.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(width)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .draw()?;
    Ok(())
}

fn latency_groups(report: &YcsbReport) -> Vec<Group> {
    let mut groups = Vec::new();
    for phase in report.load.iter().chain([&report.run]) {
        let prefix = match phase.phase {
            Phase::Load => "load",
            Phase::Run => "run",
        };
        for op in phase.ops.iter().filter(|op| op.count > 0) {
            groups.push(Group { label: format!("{prefix}: {}", op.op.name()), latency: op.latency_us.clone() });
        }
    }
    groups
}

/// The latency axis: from the power of ten below half the smallest median
/// to well above the largest maximum, so that the legend (upper left)
/// stays clear of the bars.
fn latency_range(groups: &[Group]) -> (f64, f64) {
    let smallest = groups.iter().map(|g| g.latency.p50).min().unwrap_or(1).max(1) as f64;
    let largest = groups.iter().map(|g| g.latency.max).max().unwrap_or(1).max(10) as f64;
    let bottom = 10_f64.powf((smallest / 2.0).log10().floor()).max(1.0);
    (bottom, largest * 40.0)
}

fn latency_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    report: &YcsbReport,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let groups = latency_groups(report);
    let n = groups.len().max(1);
    let (bottom, top) = latency_range(&groups);
    let labels: Vec<String> = groups.iter().map(|g| g.label.clone()).collect();
    let label_of = move |x: &f64| {
        let i = x.round();
        let near = (x - i).abs() < 1e-6 && i >= 0.0;
        near.then(|| labels.get(i as usize).cloned()).flatten().unwrap_or_default()
    };
    let mut chart = ChartBuilder::on(area)
        .caption("Latency percentiles per operation", (FONT, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5..n as f64 - 0.5, (bottom..top).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n + 1)
        .x_label_formatter(&label_of)
        .x_desc("operation")
        .y_desc(LATENCY_AXIS)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    let percentiles = PERCENTILES;
    let width = 0.8 / percentiles.len() as f64;
    for (j, (name, value)) in percentiles.into_iter().enumerate() {
        let color = PERCENTILE_COLORS[j];
        let bars = groups.iter().enumerate().map(move |(g, group)| {
            let x0 = g as f64 - 0.4 + j as f64 * width;
            let y = (value(&group.latency) as f64).max(bottom);
            Rectangle::new([(x0, bottom), (x0 + width * 0.9, y)], color.filled())
        });
        chart
            .draw_series(bars)?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .draw()?;
    Ok(())
}
