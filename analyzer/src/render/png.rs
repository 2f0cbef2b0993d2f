//! PNG charts drawn with plotters' bitmap backend.
//!
//! Text is rasterised with `ab_glyph` from DejaVu Sans, compiled into the binary (the `dejavu`
//! crate) and registered as "sans-serif", so charts render the same on a bare CI machine
//! without any system fonts or fontconfig.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::fmt;
use crate::compare::Comparison;
use crate::error::{Error, Result};
use crate::metrics::Unit;
use crate::trend::Series;
use crate::waterfall::{StepKind, Waterfall};

const FONT: &str = "sans-serif";
const SIZE: (u32, u32) = (1200, 700);

/// Colours for run sets, distinguishable in print and for common colour-vision deficiencies.
const PALETTE: [RGBColor; 6] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
];

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TrueType font shipped by the crate; failure would be a build bug.
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
            .unwrap_or_else(|_| panic!("DejaVu Sans from the dejavu crate did not load"));
        plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold())
            .unwrap_or_else(|_| panic!("DejaVu Sans Bold from the dejavu crate did not load"));
    });
}

/// Turns a drawing error into [`Error::Chart`] naming the chart's file.
trait ChartResult<T> {
    fn chart(self, path: &Path) -> Result<T>;
}

impl<T, E: std::fmt::Display> ChartResult<T> for std::result::Result<T, E> {
    fn chart(self, path: &Path) -> Result<T> {
        self.map_err(|e| Error::Chart {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }
}

/// A white canvas of `size` pixels that draws into `path`.
fn canvas(path: &Path, size: (u32, u32)) -> Result<DrawingArea<BitMapBackend<'_>, Shift>> {
    register_font();
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).chart(path)?;
    Ok(root)
}

/// The frame both bar charts share: one slot per hop (or metric) on x, centred on 0..n, and a
/// count or rate on y from 0 to `y_max`, with the mesh drawn.
fn bar_chart<'a, 'b>(
    area: &'a DrawingArea<BitMapBackend<'b>, Shift>,
    (caption, caption_size): (String, u32),
    slots: usize,
    y_max: f64,
    y_desc: &str,
    path: &Path,
) -> Result<ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, caption_size))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.5f64..(slots as f64 - 0.5), 0f64..y_max)
        .chart(path)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_label_formatter(&|v| short(*v))
        .y_desc(y_desc)
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .draw()
        .chart(path)?;
    Ok(chart)
}

/// Axis labels: `1.2M`, `689k`, `950`.
fn short(x: f64) -> String {
    let a = x.abs();
    if a >= 1e6 {
        format!("{:.1}M", x / 1e6)
    } else if a >= 1e3 {
        format!("{:.0}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

/// A file-name slug: `After Fix (2025-11-16)` -> `after-fix-2025-11-16`.
pub fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

/// Writes category labels under the x axis, centred at integer x positions.
fn category_labels<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    at: impl Fn(usize) -> (i32, i32),
    names: &[String],
) -> std::result::Result<(), String> {
    let style = TextStyle::from((FONT, 15).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
    for (i, name) in names.iter().enumerate() {
        let (x, y) = at(i);
        root.draw(&Text::new(name.clone(), (x, y + 8), style.clone()))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Per-hop rates side by side: one group per rate metric, one bar per run.
pub fn rates(cmp: &Comparison, path: &Path) -> Result<bool> {
    let rows: Vec<_> = cmp
        .rows
        .iter()
        .filter(|r| r.metric.unit == Unit::Pps)
        .collect();
    if rows.is_empty() {
        return Ok(false);
    }
    let root = canvas(path, SIZE)?;
    let max = rows
        .iter()
        .flat_map(|r| r.cells.iter().flatten().map(|c| c.value))
        .fold(0.0, f64::max)
        .max(1.0);
    let n = rows.len();
    let sets = cmp.labels.len();
    let mut chart = bar_chart(
        &root,
        ("Rates per hop (packets/s)".to_string(), 26),
        n,
        max * 1.18,
        "packets/s",
        path,
    )?;
    let width = 0.8 / sets as f64;
    let value_style =
        TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    for s in 0..sets {
        let color = PALETTE[s % PALETTE.len()];
        let mut bars = Vec::new();
        let mut labels = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            if let Some(c) = r.cells[s] {
                let x0 = i as f64 - 0.4 + s as f64 * width;
                let style = if c.reported {
                    color.mix(0.45).filled()
                } else {
                    color.filled()
                };
                bars.push(Rectangle::new(
                    [(x0, 0.0), (x0 + width * 0.92, c.value)],
                    style,
                ));
                let text = format!("{}{}", short(c.value), if c.reported { " (R)" } else { "" });
                labels.push(Text::new(
                    text,
                    (x0 + width * 0.46, c.value),
                    value_style.clone(),
                ));
            }
        }
        chart
            .draw_series(bars)
            .chart(path)?
            .label(cmp.labels[s].clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
        chart.draw_series(labels).chart(path)?;
    }
    chart
        .configure_series_labels()
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .chart(path)?;
    let names: Vec<String> = rows.iter().map(|r| r.metric.label.clone()).collect();
    category_labels(&root, |i| chart.backend_coord(&(i as f64, 0.0)), &names).chart(path)?;
    let any_reported = rows
        .iter()
        .any(|r| r.cells.iter().flatten().any(|c| c.reported));
    if any_reported {
        root.draw(&Text::new(
            "pale bars marked (R): rate as printed by the source, no counters",
            (20, SIZE.1 as i32 - 22),
            (FONT, 13).into_font(),
        ))
        .chart(path)?;
    }
    root.present().chart(path)?;
    Ok(true)
}

/// Loss classes of the waterfall chart, bottom to top, with their colours.
const CLASSES: [(&str, RGBColor); 7] = [
    ("sent on", RGBColor(0, 158, 115)),
    ("buffer exhaustion", RGBColor(213, 94, 0)),
    ("egress errors / in flight", RGBColor(204, 121, 167)),
    ("filtered / malformed / no match", RGBColor(86, 180, 233)),
    ("kernel and link drops", RGBColor(230, 159, 0)),
    (
        "lost before counters (unexplained)",
        RGBColor(120, 120, 120),
    ),
    ("remainder (unexplained)", RGBColor(40, 40, 40)),
];

fn classes(h: &crate::waterfall::HopFlow) -> [u64; 7] {
    let step = |kind: StepKind| {
        h.steps
            .iter()
            .find(|s| s.kind == kind)
            .and_then(|s| s.count)
            .unwrap_or(0)
    };
    [
        h.sent_on.unwrap_or(0),
        step(StepKind::BufExhaust),
        step(StepKind::TxErrors) + step(StepKind::InFlight),
        step(StepKind::Filtered) + step(StepKind::Malformed) + step(StepKind::NoMatch),
        h.kernel_drops.unwrap_or(0) + h.link_drops.unwrap_or(0),
        h.unseen.unwrap_or(0).max(0) as u64,
        h.remainder.unwrap_or(0).max(0) as u64,
    ]
}

/// The loss waterfall of one run: a stacked bar per hop, from what the upstream offered down
/// to what the hop sent on. Returns false when the run has no per-hop counters.
/// `camera: 36 sequence numbers lost on the way here` for each monitored stream with loss new at `hop` (see
/// `stream_loss.rs`), or `None` when no stream lost anything there.
fn stream_loss_line(w: &Waterfall, hop: &str) -> Option<String> {
    let parts: Vec<String> = w
        .streams
        .iter()
        .filter_map(|path| {
            let p = path.points.iter().find(|p| !p.receiver && p.at == hop)?;
            (p.new_loss > 0).then(|| {
                let n = fmt::count(p.new_loss as u64);
                format!("{}: {n} {} lost on the way here", path.rule, path.unit())
            })
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

pub fn waterfall(w: &Waterfall, title: &str, path: &Path) -> Result<bool> {
    let hops: Vec<_> = w
        .hops
        .iter()
        .filter(|h| h.received.is_some() || h.sent_on.is_some())
        .collect();
    if hops.is_empty() {
        return Ok(false);
    }
    let root = canvas(path, SIZE)?;
    let totals: Vec<u64> = hops.iter().map(|h| classes(h).iter().sum()).collect();
    let max = totals.iter().copied().max().unwrap_or(1).max(1) as f64;
    let n = hops.len();
    let (area, legend_area) = root.split_horizontally(SIZE.0 - 330);
    let mut chart = bar_chart(
        &area,
        (format!("Where packets went: {title}"), 24),
        n,
        max * 1.12,
        "packets",
        path,
    )?;
    let value_style =
        TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    for (i, h) in hops.iter().enumerate() {
        let parts = classes(h);
        let mut base = 0.0;
        for (k, &count) in parts.iter().enumerate() {
            if count == 0 {
                continue;
            }
            let top = base + count as f64;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(i as f64 - 0.3, base), (i as f64 + 0.3, top)],
                    CLASSES[k].1.filled(),
                )))
                .chart(path)?;
            base = top;
        }
        let received = h.received.map_or("?".into(), fmt::count);
        let sent = h.sent_on.map_or("?".into(), fmt::count);
        chart
            .draw_series(std::iter::once(Text::new(
                format!("rx {received} → tx {sent}"),
                (i as f64, base),
                value_style.clone(),
            )))
            .chart(path)?;
        // Above it, the monitored streams' loss first seen at this hop (sequence numbers or
        // TS packets lost since the point before), so a lossy link shows beside the classes.
        if let Some(line) = stream_loss_line(w, &h.hop) {
            chart
                .draw_series(std::iter::once(Text::new(
                    line,
                    (i as f64, base + max * 0.055),
                    value_style.clone().color(&RED),
                )))
                .chart(path)?;
        }
    }
    let names: Vec<String> = hops.iter().map(|h| h.hop.clone()).collect();
    category_labels(&area, |i| chart.backend_coord(&(i as f64, 0.0)), &names).chart(path)?;
    for (k, (label, color)) in CLASSES.iter().enumerate() {
        let y = 90 + k as i32 * 30;
        legend_area
            .draw(&Rectangle::new([(10, y), (28, y + 18)], color.filled()))
            .chart(path)?;
        legend_area
            .draw(&Text::new(
                label.to_string(),
                (36, y + 1),
                (FONT, 15).into_font(),
            ))
            .chart(path)?;
    }
    root.present().chart(path)?;
    Ok(true)
}

/// Latency percentiles of every run that has them. Returns false when none has.
pub fn latency(cmp: &Comparison, path: &Path) -> Result<bool> {
    let rows: Vec<_> = cmp
        .rows
        .iter()
        .filter(|r| r.metric.unit == Unit::Nanos)
        .collect();
    if rows.is_empty() {
        return Ok(false);
    }
    let root = canvas(path, SIZE)?;
    let (lo_us, hi_us) = rows
        .iter()
        .flat_map(|r| r.cells.iter().flatten().map(|c| c.value / 1e3))
        .fold((f64::INFINITY, 0.0f64), |(a, b), v| (a.min(v), b.max(v)));
    // Tails span orders of magnitude: a log axis keeps p50 readable next to p99.9.
    let lo_us = (lo_us / 1.5).max(0.001);
    let hi_us = (hi_us * 1.5).max(lo_us * 10.0);
    let n = rows.len();
    let mut chart = ChartBuilder::on(&root)
        .caption("One-way latency by percentile (log scale)", (FONT, 26))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(90)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), (lo_us..hi_us).log_scale())
        .chart(path)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("latency")
        .y_label_formatter(&|v| fmt::latency(*v * 1e3))
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .draw()
        .chart(path)?;
    for s in 0..cmp.labels.len() {
        let color = PALETTE[s % PALETTE.len()];
        let pts: Vec<(f64, f64)> = rows
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.cells[s].map(|c| (i as f64, c.value / 1e3)))
            .collect();
        if pts.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(3)))
            .chart(path)?
            .label(cmp.labels[s].clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(3))
            });
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 5, color.filled())))
            .chart(path)?;
    }
    chart
        .configure_series_labels()
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .chart(path)?;
    let names: Vec<String> = rows
        .iter()
        .map(|r| r.metric.label.trim_start_matches("Latency ").to_string())
        .collect();
    category_labels(&root, |i| chart.backend_coord(&(i as f64, 0.0)), &names).chart(path)?;
    root.present().chart(path)?;
    Ok(true)
}

/// One metric's history: the values, each segment's mean as a horizontal line (red when it
/// is the newest segment and regressed), and a dashed line at every change point.
pub fn trend_series(s: &Series, runs: &[String], path: &Path) -> Result<()> {
    let root = canvas(path, (1200, 500))?;
    let (lo, hi) = s
        .values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let pad = ((hi - lo) * 0.15).max(hi.abs() * 0.02).max(1e-9);
    let n = runs.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(&s.metric.label, (FONT, 24))
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(90)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), (lo - pad).max(0.0)..hi + pad)
        .chart(path)?;
    let unit = s.metric.unit;
    chart
        .configure_mesh()
        .x_labels(n.min(20))
        .x_label_formatter(&|v| {
            let i = v.round();
            if (v - i).abs() < 1e-6 && i >= 0.0 {
                format!("{}", i as usize + 1)
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|v| match unit {
            Unit::Pps => short(*v),
            other => fmt::value(other, *v),
        })
        .x_desc("run (numbered as in the report)")
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .draw()
        .chart(path)?;
    let pts: Vec<(f64, f64)> = s
        .values
        .iter()
        .zip(&s.run_index)
        .map(|(&v, &i)| (i as f64, v))
        .collect();
    chart
        .draw_series(LineSeries::new(pts.clone(), PALETTE[0].stroke_width(2)))
        .chart(path)?;
    chart
        .draw_series(pts.iter().map(|&p| Circle::new(p, 4, PALETTE[0].filled())))
        .chart(path)?;
    for (k, seg) in s.segments.iter().enumerate() {
        let x0 = s.run_index[seg.start] as f64 - 0.3;
        let x1 = s.run_index[seg.end - 1] as f64 + 0.3;
        let last = k + 1 == s.segments.len();
        let color = if last && s.newest_regressed {
            RGBColor(213, 94, 0)
        } else {
            RGBColor(0, 158, 115)
        };
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x0, seg.mean), (x1, seg.mean)],
                color.stroke_width(3),
            )))
            .chart(path)?;
        if k > 0 {
            let x = s.run_index[seg.start] as f64 - 0.5;
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(x, (lo - pad).max(0.0)), (x, hi + pad)],
                    6,
                    4,
                    BLACK.stroke_width(1),
                ))
                .chart(path)?;
        }
    }
    root.present().chart(path)?;
    Ok(())
}

/// The history's medians per day, one line per slice, with the 10th–90th percentile range of
/// each day as a vertical bar. Days are placed in order on x (labelled with their date).
pub fn history(slices: &[crate::history::Slice], path: &Path) -> Result<bool> {
    let mut days: Vec<&str> = slices
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.day.as_str()))
        .collect();
    days.sort_unstable();
    days.dedup();
    if days.is_empty() {
        return Ok(false);
    }
    let x = |d: &str| days.binary_search(&d).unwrap_or(0) as f64;
    let (lo, hi) = slices
        .iter()
        .flat_map(|s| s.points.iter())
        .flat_map(|p| [p.p10, p.p90, p.median])
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return Ok(false);
    }
    let pad = ((hi - lo) * 0.15).max(hi.abs() * 0.02).max(1e-9);
    let unit = slices[0].unit;
    let root = canvas(path, (1200, 550))?;
    let n = days.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "History: median per day (bars: 10th to 90th percentile)",
            (FONT, 22),
        )
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(90)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), (lo - pad).max(0.0)..hi + pad)
        .chart(path)?;
    let labels = days.clone();
    chart
        .configure_mesh()
        .x_labels(n.min(12))
        .x_label_formatter(&|v| {
            let i = v.round();
            if (v - i).abs() < 1e-6 && i >= 0.0 {
                labels
                    .get(i as usize)
                    .map_or(String::new(), |d| d.to_string())
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|v| match unit {
            Unit::Pps => short(*v),
            other => fmt::value(other, *v),
        })
        .label_style((FONT, 14))
        .draw()
        .chart(path)?;
    for (i, s) in slices.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let pts: Vec<(f64, f64)> = s.points.iter().map(|p| (x(&p.day), p.median)).collect();
        let relay = if s.relay.is_empty() {
            String::new()
        } else {
            format!(" ({})", s.relay)
        };
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .chart(path)?
            .label(format!("{}{relay}", s.label))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            });
        chart
            .draw_series(s.points.iter().map(|p| {
                PathElement::new(
                    vec![(x(&p.day), p.p10), (x(&p.day), p.p90)],
                    color.stroke_width(1),
                )
            }))
            .chart(path)?;
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .chart(path)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font((FONT, 14))
        .draw()
        .chart(path)?;
    root.present().chart(path)?;
    Ok(true)
}

/// Path of a chart inside `dir`.
pub fn chart_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.png"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hop_s_line_names_the_streams_whose_loss_is_new_there() {
        use crate::stream_loss::{Point, StreamPath};
        let point = |at: &str, receiver: bool, new_loss: i64| Point {
            at: at.into(),
            receiver,
            datagrams: 1000,
            foreign: None,
            gaps: None,
            lost: new_loss.max(0) as u64,
            repeats: 0,
            new_loss,
            upstream_dropped: None,
        };
        let w = Waterfall {
            run: "r".into(),
            hops: Vec::new(),
            delivery: None,
            softnet_dropped: None,
            softnet_explains: None,
            conservation: None,
            streams: vec![StreamPath {
                rule: "camera".into(),
                kind: crate::record::StreamKind::Rtp,
                points: vec![
                    point("MCR-1", false, 0),
                    point("MCR-2", false, 1234),
                    point("receiver", true, 47),
                ],
            }],
        };
        assert_eq!(stream_loss_line(&w, "MCR-1"), None);
        assert_eq!(
            stream_loss_line(&w, "MCR-2").as_deref(),
            Some("camera: 1,234 sequence numbers lost on the way here")
        );
        assert_eq!(stream_loss_line(&w, "receiver"), None, "not a hop's bar");
    }

    #[test]
    fn slugs_and_short_numbers() {
        assert_eq!(slug("After Fix (2025-11-16)"), "after-fix-2025-11-16");
        assert_eq!(short(688_842.0), "689k");
        assert_eq!(short(10_000_000.0), "10.0M");
    }
}
