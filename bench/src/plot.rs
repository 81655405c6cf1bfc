//! SVG percentile plots, drawn the way HdrHistogram's plotter draws them:
//! latency against percentile on a logarithmic "1/(1-p)" axis, so that every
//! decade of the tail (90 %, 99 %, 99.9 %, …) gets the same width.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use plotters::prelude::*;

use crate::recorder::PercentilePoint;

/// Size of a plot in pixels.
pub const WIDTH: u32 = 900;
pub const HEIGHT: u32 = 540;
/// The x axis spans at least 99 % and at most 99.9999 %.
const MIN_DECADES: u32 = 2;
const MAX_DECADES: u32 = 6;

/// Line colours, in the order series are drawn (colour-blind friendly).
const COLOURS: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
    RGBColor(240, 228, 66),
];

/// One curve of a plot.
#[derive(Debug, Clone, Copy)]
pub struct Series<'a> {
    /// Legend text (shown when the plot has more than one series).
    pub label: &'a str,
    /// The curve, as [`crate::recorder::Recorder::percentile_curve`] gives it.
    pub points: &'a [PercentilePoint],
}

/// Position on the x axis of a quantile: `log10(1 / (1 - q))`, so 0 % -> 0,
/// 90 % -> 1, 99 % -> 2, …; quantile 1 (the maximum) has no finite position
/// and is drawn at the right edge, `decades`.
pub fn x_of_quantile(quantile: f64, decades: u32) -> f64 {
    let edge = f64::from(decades);
    if quantile >= 1.0 || quantile.is_nan() {
        return edge;
    }
    (1.0 / (1.0 - quantile.max(0.0))).log10().min(edge)
}

/// The axis label of decade `d`: 0 %, 90 %, 99 %, 99.9 %, …
pub fn decade_label(d: u32) -> String {
    match d {
        0 => "0%".to_owned(),
        1 => "90%".to_owned(),
        _ => {
            let nines = "9".repeat(d as usize - 2);
            if nines.is_empty() {
                "99%".to_owned()
            } else {
                format!("99.{nines}%")
            }
        }
    }
}

/// How many decades the x axis needs to show every finite point of the
/// series: the next whole decade past the highest quantile below 1.
fn decades_for(series: &[Series<'_>]) -> u32 {
    let highest = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|p| p.quantile < 1.0)
        .map(|p| (1.0 / (1.0 - p.quantile.max(0.0))).log10())
        .fold(0.0f64, f64::max);
    // The percentile iterator's last finite step sits just below the sample
    // count's decade; rounding up (minus a hair) keeps it on the axis.
    let needed = (highest - 1e-9).ceil().max(0.0) as u32;
    needed.clamp(MIN_DECADES, MAX_DECADES)
}

/// Latency unit of the y axis: milliseconds from 1 ms up, else microseconds.
fn unit_for(max_ns: u64) -> (&'static str, f64) {
    if max_ns >= 1_000_000 {
        ("ms", 1e6)
    } else {
        ("µs", 1e3)
    }
}

/// Renders a percentile plot of one or more curves as an SVG document.
///
/// Fails if no series has a point, or if drawing fails.
pub fn percentile_svg(title: &str, series: &[Series<'_>]) -> Result<String> {
    let max_ns = series
        .iter()
        .flat_map(|s| s.points.iter())
        .map(|p| p.value_ns)
        .max()
        .ok_or_else(|| anyhow!("plot {title:?}: no data points"))?;
    let decades = decades_for(series);
    let (unit, per_unit) = unit_for(max_ns);
    let y_max = (max_ns as f64 / per_unit * 1.08).max(f64::MIN_POSITIVE);

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(16)
            .margin_right(40)
            .x_label_area_size(44)
            .y_label_area_size(72)
            .build_cartesian_2d(0.0..f64::from(decades), 0.0..y_max)
            .map_err(draw_error)?;
        chart
            .configure_mesh()
            .x_desc("Percentile")
            .y_desc(format!("Latency ({unit})"))
            // With at most one label per unit, plotters puts them on the
            // whole decades; anything else would be mislabelled, so it gets none.
            .x_labels(decades as usize + 1)
            .x_label_formatter(&|x| {
                let d = x.round();
                if (x - d).abs() < 1e-6 && d >= 0.0 {
                    decade_label(d as u32)
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|y| format_axis_value(*y))
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(draw_error)?;
        for (i, s) in series.iter().enumerate() {
            if s.points.is_empty() {
                continue;
            }
            let colour = COLOURS[i % COLOURS.len()];
            let line = s.points.iter().map(|p| {
                (
                    x_of_quantile(p.quantile, decades),
                    p.value_ns as f64 / per_unit,
                )
            });
            chart
                .draw_series(LineSeries::new(line, colour.stroke_width(2)))
                .map_err(draw_error)?
                .label(s.label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                });
        }
        if series.len() > 1 {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .label_font(("sans-serif", 14))
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(160, 160, 160))
                .draw()
                .map_err(draw_error)?;
        }
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

/// Renders [`percentile_svg`] to `path`.
pub fn write_percentile_svg(path: &Path, title: &str, series: &[Series<'_>]) -> Result<()> {
    if series.iter().all(|s| s.points.is_empty()) {
        bail!("plot {}: no data points", path.display());
    }
    let svg =
        percentile_svg(title, series).with_context(|| format!("plotting {}", path.display()))?;
    std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))
}

fn draw_error<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing the plot: {e}")
}

/// Axis tick text: up to three significant decimals, no trailing zeros.
fn format_axis_value(v: f64) -> String {
    let text = if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decade_labels_read_like_hdrhistogram_plots() {
        let labels: Vec<_> = (0..=5).map(decade_label).collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]);
    }

    #[test]
    fn quantiles_map_to_decades_and_the_max_to_the_edge() {
        assert_eq!(x_of_quantile(0.0, 5), 0.0);
        assert!((x_of_quantile(0.9, 5) - 1.0).abs() < 1e-9);
        assert!((x_of_quantile(0.999, 5) - 3.0).abs() < 1e-9);
        assert_eq!(x_of_quantile(1.0, 5), 5.0);
        assert_eq!(x_of_quantile(0.999_999_9, 5), 5.0);
    }

    #[test]
    fn axis_spans_the_decades_the_data_reaches() {
        let p = |quantile| PercentilePoint {
            quantile,
            value_ns: 1,
        };
        let few = [p(0.0), p(0.5), p(1.0)];
        let many = [p(0.0), p(0.9995), p(1.0)];
        let s = |points| Series { label: "", points };
        assert_eq!(decades_for(&[s(&few)]), MIN_DECADES);
        assert_eq!(decades_for(&[s(&few), s(&many)]), 4);
    }

    #[test]
    fn empty_plots_are_refused() {
        let err = percentile_svg("nothing", &[]).unwrap_err();
        assert!(err.to_string().contains("no data points"), "{err}");
    }

    #[test]
    fn axis_values_are_short() {
        assert_eq!(format_axis_value(0.0), "0");
        assert_eq!(format_axis_value(2.5), "2.5");
        assert_eq!(format_axis_value(12.34), "12.3");
        assert_eq!(format_axis_value(1500.0), "1500");
    }
}
