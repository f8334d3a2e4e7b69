//! Figures with plotters: learning curves (median across seeds, IQR shaded, frozen phase
//! marked) and weight heatmaps. Text is drawn with a bundled font (DejaVu Sans), so figures
//! render the same on machines without system fonts.

use std::path::Path;
use std::sync::Once;

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::stats::Spread;

/// One colour per network kind, in `--kinds` order (the reproductions' curves and bars).
pub const KIND_PALETTE: [RGBColor; 5] = [
    RGBColor(127, 127, 127),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
];

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

/// Registers the bundled font (idempotent), for figures drawn outside this module.
pub fn register_font_public() {
    register_font();
}

fn register_font() {
    REGISTER.call_once(|| {
        if plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_err() {
            panic!("the bundled DejaVu Sans font is valid");
        }
    });
}

/// A figure drawn the same way on any plotters backend (PNG and SVG alike).
pub trait Figure {
    /// Draws the figure on `root`.
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> Result<(), String>;
}

/// Writes `figure` to `<stem>.png` and `<stem>.svg`, `size` pixels; an error names the file.
pub fn write_png_svg(stem: &Path, size: (u32, u32), figure: &impl Figure) -> Result<()> {
    register_font();
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    figure
        .draw(BitMapBackend::new(&png, size).into_drawing_area())
        .map_err(|e| anyhow!("{}: cannot draw the figure: {e}", png.display()))?;
    figure
        .draw(SVGBackend::new(&svg, size).into_drawing_area())
        .map_err(|e| anyhow!("{}: cannot draw the figure: {e}", svg.display()))
}

/// Median learning curve of one task across seeds.
pub struct Curve<'a> {
    /// Figure title.
    pub title: String,
    /// Y-axis label.
    pub y_label: String,
    /// Per-episode median and quartiles.
    pub spreads: &'a [Spread],
    /// First frozen episode (parameters fixed from there on).
    pub frozen_from: usize,
}

/// Writes `curve` to `<stem>.png` and `<stem>.svg`: a linear panel (as in the paper) and a
/// log-scale panel, median line with the interquartile range shaded, frozen phase in grey.
pub fn learning_curve(stem: &Path, curve: &Curve) -> Result<()> {
    write_png_svg(stem, (1400, 520), curve)
}

impl Figure for Curve<'_> {
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> Result<(), String> {
        draw_curve(root, self)
    }
}

fn draw_curve<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    curve: &Curve,
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(&curve.title, ("sans-serif", 22)).map_err(err)?;
    let (left, right) = root.split_horizontally(700);
    let n = curve.spreads.len();
    let x_max = n.max(1) as f64;
    let y_max = curve
        .spreads
        .iter()
        .map(|s| s.q75)
        .fold(0.0f64, f64::max)
        .max(1e-12)
        * 1.05;
    let positive_min = curve
        .spreads
        .iter()
        .map(|s| s.q25)
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    let y_min_log = if positive_min.is_finite() {
        positive_min * 0.8
    } else {
        1e-6
    };
    let median = || {
        curve
            .spreads
            .iter()
            .enumerate()
            .map(|(e, s)| (e as f64, s.median))
    };
    let band = |floor: f64| -> Vec<(f64, f64)> {
        let upper = curve
            .spreads
            .iter()
            .enumerate()
            .map(|(e, s)| (e as f64, s.q75.max(floor)));
        let lower = curve
            .spreads
            .iter()
            .enumerate()
            .rev()
            .map(|(e, s)| (e as f64, s.q25.max(floor)));
        upper.chain(lower).collect()
    };
    let frozen = curve.frozen_from as f64;
    let blue = RGBColor(31, 119, 180);

    // Linear panel.
    let mut chart = ChartBuilder::on(&left)
        .caption("linear scale", ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("episode")
        .y_desc(curve.y_label.as_str())
        .x_label_formatter(&|v| format!("{v:.0}"))
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    if curve.frozen_from < n {
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(frozen, 0.0), (x_max, y_max)],
                RGBColor(225, 225, 225).filled(),
            )))
            .map_err(err)?
            .label("frozen (parameters fixed)")
            .legend(|(x, y)| {
                Rectangle::new(
                    [(x, y - 5), (x + 14, y + 5)],
                    RGBColor(225, 225, 225).filled(),
                )
            });
    }
    chart
        .draw_series(std::iter::once(Polygon::new(
            band(0.0),
            blue.mix(0.25).filled(),
        )))
        .map_err(err)?
        .label("interquartile range")
        .legend(move |(x, y)| {
            Rectangle::new([(x, y - 5), (x + 14, y + 5)], blue.mix(0.25).filled())
        });
    chart
        .draw_series(LineSeries::new(median(), blue.stroke_width(2)))
        .map_err(err)?
        .label("median")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], blue.stroke_width(2)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err)?;

    // Log panel.
    let mut chart = ChartBuilder::on(&right)
        .caption("log scale", ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(
            0f64..x_max,
            (y_min_log..y_max.max(y_min_log * 10.0)).log_scale(),
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("episode")
        .y_desc(curve.y_label.as_str())
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0e}"))
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    if curve.frozen_from < n {
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(frozen, y_min_log), (x_max, y_max.max(y_min_log * 10.0))],
                RGBColor(225, 225, 225).filled(),
            )))
            .map_err(err)?;
    }
    chart
        .draw_series(std::iter::once(Polygon::new(
            band(y_min_log),
            blue.mix(0.25).filled(),
        )))
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(
            median().map(|(x, y)| (x, y.max(y_min_log))),
            blue.stroke_width(2),
        ))
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// A labelled matrix for [`heatmaps`].
pub struct Matrix<'a> {
    /// Panel title.
    pub title: &'a str,
    /// Values, `[rows, cols]` row-major.
    pub values: &'a [f64],
    /// Row labels (one per row).
    pub rows: &'a [String],
    /// Column labels (one per column).
    pub cols: &'a [String],
}

/// Writes `matrices` side by side as heatmaps to a PNG: each cell coloured on a diverging
/// scale (blue negative, white zero, red positive), scaled to the panel's largest |value|,
/// with the value printed in the cell.
pub fn heatmaps(path: &Path, title: &str, matrices: &[Matrix]) -> Result<()> {
    register_font();
    let rows = matrices.iter().map(|m| m.rows.len()).max().unwrap_or(1);
    let width = 360 * matrices.len() as u32 + 40;
    let height = (40 * rows as u32 + 140).max(300);
    let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
    draw_heatmaps(root, title, matrices)
        .map_err(|e| anyhow!("{}: cannot draw the heatmaps: {e}", path.display()))
}

fn draw_heatmaps<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    matrices: &[Matrix],
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(title, ("sans-serif", 20)).map_err(err)?;
    let panels = root.split_evenly((1, matrices.len().max(1)));
    for (panel, m) in panels.iter().zip(matrices) {
        let (r, c) = (m.rows.len(), m.cols.len());
        let scale = m
            .values
            .iter()
            .fold(0.0f64, |a, v| a.max(v.abs()))
            .max(1e-12);
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!("{} (max |value| {scale:.3})", m.title),
                ("sans-serif", 15),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..c as f64, 0f64..r as f64)
            .map_err(err)?;
        let row_label = |v: &f64| {
            let i = r as isize - 1 - v.floor() as isize;
            if v.fract() == 0.5 && i >= 0 {
                m.rows[i as usize].clone()
            } else {
                String::new()
            }
        };
        let col_label = |v: &f64| {
            let j = v.floor() as usize;
            if v.fract() == 0.5 && j < c {
                m.cols[j].clone()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(2 * c + 1)
            .y_labels(2 * r + 1)
            .x_label_formatter(&col_label)
            .y_label_formatter(&row_label)
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(err)?;
        let cells = (0..r).flat_map(|i| (0..c).map(move |j| (i, j)));
        chart
            .draw_series(cells.clone().map(|(i, j)| {
                let v = m.values[i * c + j] / scale;
                let t = v.abs().min(1.0);
                let fade = |full: u8| (255.0 - t * (255.0 - f64::from(full))) as u8;
                let color = if v >= 0.0 {
                    RGBColor(fade(202), fade(0), fade(32))
                } else {
                    RGBColor(fade(5), fade(113), fade(176))
                };
                let y = (r - 1 - i) as f64;
                Rectangle::new([(j as f64, y), (j as f64 + 1.0, y + 1.0)], color.filled())
            }))
            .map_err(err)?;
        chart
            .draw_series(cells.map(|(i, j)| {
                let y = (r - 1 - i) as f64 + 0.5;
                Text::new(
                    format!("{:.2}", m.values[i * c + j]),
                    (j as f64 + 0.3, y + 0.1),
                    ("sans-serif", 12),
                )
            }))
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

/// Writes square matrices side by side as one-colour-per-cell images (no values printed: for
/// the recurrent networks' `N × N` weights), on the diverging scale of [`heatmaps`], each
/// panel scaled to its largest |value|. Panels are `(title, values [n, n] row-major, n)`.
pub fn matrix_images(path: &Path, title: &str, panels: &[(&str, &[f64], usize)]) -> Result<()> {
    register_font();
    let side = 400u32;
    let width = (side + 20) * panels.len() as u32 + 20;
    let root = BitMapBackend::new(path, (width, side + 90)).into_drawing_area();
    draw_matrix_images(root, title, panels, side)
        .map_err(|e| anyhow!("{}: cannot draw the matrices: {e}", path.display()))
}

fn draw_matrix_images<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    panels: &[(&str, &[f64], usize)],
    side: u32,
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(title, ("sans-serif", 18)).map_err(err)?;
    for (k, (name, values, n)) in panels.iter().enumerate() {
        let x0 = 20 + k as i32 * (side as i32 + 20);
        let scale = values.iter().fold(0.0f64, |a, v| a.max(v.abs())).max(1e-12);
        root.draw(&Text::new(
            format!("{name} (max |value| {scale:.3})"),
            (x0, 8),
            ("sans-serif", 14),
        ))
        .map_err(err)?;
        let n = (*n).max(1);
        for py in 0..side {
            for px in 0..side {
                let (i, j) = (
                    (py as usize * n) / side as usize,
                    (px as usize * n) / side as usize,
                );
                let v = values.get(i * n + j).copied().unwrap_or(0.0) / scale;
                let t = v.abs().min(1.0);
                let fade = |full: u8| (255.0 - t * (255.0 - f64::from(full))) as u8;
                let color = if v >= 0.0 {
                    RGBColor(fade(202), fade(0), fade(32))
                } else {
                    RGBColor(fade(5), fade(113), fade(176))
                };
                root.draw_pixel((x0 + px as i32, 30 + py as i32), &color)
                    .map_err(err)?;
            }
        }
    }
    root.present().map_err(err)
}

/// One series of a scaling figure: `(N, seconds per episode, peak MiB)` per measured size.
pub struct ScalingSeries {
    /// Legend label.
    pub label: String,
    /// The measured points.
    pub points: Vec<(f64, f64, f64)>,
}

/// Writes `<stem>.png` and `<stem>.svg`: seconds per episode (left) and peak memory (right)
/// against the number of neurons, log-log, one line per series; `note` under the title (e.g.
/// where a series failed).
pub fn scaling(stem: &Path, title: &str, note: &str, series: &[ScalingSeries]) -> Result<()> {
    write_png_svg(stem, (1400, 560), &Scaling(title, note, series))
}

/// [`scaling`]'s figure: title, note, series.
struct Scaling<'a>(&'a str, &'a str, &'a [ScalingSeries]);

impl Figure for Scaling<'_> {
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> Result<(), String> {
        draw_scaling(root, self.0, self.1, self.2)
    }
}

fn draw_scaling<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    note: &str,
    series: &[ScalingSeries],
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(title, ("sans-serif", 22)).map_err(err)?;
    let (root, footer) = root.split_vertically(500);
    footer
        .draw(&Text::new(
            note.to_string(),
            (20, 10),
            ("sans-serif", 15).into_font(),
        ))
        .map_err(err)?;
    let (left, right) = root.split_horizontally(700);
    let all = || series.iter().flat_map(|s| s.points.iter());
    let range = |f: &dyn Fn(&(f64, f64, f64)) -> f64| {
        let lo = all()
            .map(f)
            .filter(|v| *v > 0.0)
            .fold(f64::INFINITY, f64::min);
        let hi = all().map(f).fold(0.0f64, f64::max);
        if lo.is_finite() && hi > 0.0 {
            (lo / 1.5, hi * 1.5)
        } else {
            (0.1, 10.0)
        }
    };
    let (x0, x1) = range(&|p| p.0);
    let colours = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
    ];
    for (area, y, (y0, y1), label) in [
        (&left, 1usize, range(&|p| p.1), "seconds per episode"),
        (&right, 2usize, range(&|p| p.2), "peak memory (MiB)"),
    ] {
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("neurons N")
            .y_desc(label)
            .x_labels(6)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v}"))
            .draw()
            .map_err(err)?;
        for (k, s) in series.iter().enumerate() {
            let colour = colours[k % colours.len()];
            let pts: Vec<(f64, f64)> = s
                .points
                .iter()
                .map(|p| (p.0, if y == 1 { p.1 } else { p.2 }))
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), colour.stroke_width(2)))
                .map_err(err)?
                .label(s.label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                });
            chart
                .draw_series(pts.into_iter().map(|p| Circle::new(p, 4, colour.filled())))
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}
