//! Charts drawn with plotters, each written as PNG and SVG. Text uses DejaVu Sans, embedded in
//! the binary (`assets/DejaVuSans.ttf`, Bitstream Vera licence, see
//! `assets/DejaVuSans-LICENSE.txt`) and registered as `sans-serif`, so PNGs need no system
//! fonts. Every chart has a title and axis labels with units.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use tb_gguf::fsio::{write_atomic, write_atomic_via_path};

use crate::error::{io, Error, Result};

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

const SIZE: (u32, u32) = (960, 540);

/// `(series name, value per category)` lists of category charts.
pub type CategorySeries = Vec<(String, Vec<Option<f64>>)>;

/// What to draw.
#[derive(Debug, Clone, PartialEq)]
pub enum ChartKind {
    /// Lines over a numeric x axis: `(name, points)`.
    Lines(Vec<(String, Vec<(f64, f64)>)>),
    /// Bars over categories: each series has one optional value per category (missing values
    /// leave a gap).
    Bars {
        /// Category names along x.
        categories: Vec<String>,
        /// `(series name, value per category)`.
        series: CategorySeries,
    },
    /// Lines over categories (e.g. commits): like [`ChartKind::Bars`] but joined points.
    CategoryLines {
        /// Category names along x.
        categories: Vec<String>,
        /// `(series name, value per category)`.
        series: CategorySeries,
    },
}

/// A chart: title, axis labels (with units) and data.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// File stem (`loss`, `tokens_per_s`, ...).
    pub stem: String,
    /// Title.
    pub title: String,
    /// X axis label with unit.
    pub x_label: String,
    /// Y axis label with unit.
    pub y_label: String,
    /// Data.
    pub kind: ChartKind,
}

/// Files written for a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartFiles {
    /// The chart's title (alt text).
    pub title: String,
    /// PNG path.
    pub png: PathBuf,
    /// SVG path.
    pub svg: PathBuf,
}

fn register_font() {
    REGISTER.call_once(|| {
        if plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_err() {
            tracing::error!("the embedded DejaVu Sans font could not be parsed");
        }
    });
}

fn color(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 6] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
    ];
    COLORS[i % COLORS.len()]
}

fn range_with_margin(values: impl Iterator<Item = f64>, from_zero: bool) -> (f64, f64) {
    let (mut lo, mut hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if from_zero {
        lo = lo.min(0.0);
    }
    if hi <= lo {
        hi = lo + 1.0;
    }
    let pad = (hi - lo) * 0.08;
    (if from_zero { lo } else { lo - pad }, hi + pad)
}

type DrawResult = std::result::Result<(), String>;

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, chart: &Chart) -> DrawResult {
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
    root.fill(&WHITE).map_err(e)?;
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(&chart.title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(56)
        .y_label_area_size(80);
    match &chart.kind {
        ChartKind::Lines(series) => {
            let (x0, x1) = range_with_margin(
                series.iter().flat_map(|(_, p)| p.iter().map(|q| q.0)),
                false,
            );
            let (y0, y1) = range_with_margin(
                series.iter().flat_map(|(_, p)| p.iter().map(|q| q.1)),
                false,
            );
            let mut c = builder.build_cartesian_2d(x0..x1, y0..y1).map_err(e)?;
            c.configure_mesh()
                .x_desc(&chart.x_label)
                .y_desc(&chart.y_label)
                .label_style(("sans-serif", 15))
                .axis_desc_style(("sans-serif", 17))
                .draw()
                .map_err(e)?;
            for (i, (name, points)) in series.iter().enumerate() {
                let col = color(i);
                c.draw_series(LineSeries::new(points.iter().copied(), col.stroke_width(2)))
                    .map_err(e)?
                    .label(name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2))
                    });
            }
            c.configure_series_labels()
                .label_font(("sans-serif", 15))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(e)?;
        }
        ChartKind::Bars { categories, series }
        | ChartKind::CategoryLines { categories, series } => {
            let bars = matches!(chart.kind, ChartKind::Bars { .. });
            let n = categories.len().max(1);
            let (y0, y1) = range_with_margin(
                series.iter().flat_map(|(_, v)| v.iter().flatten().copied()),
                bars,
            );
            // Integer x (100 units per category): plotters' key-point axes format only
            // integer coordinates, and sub-positions of grouped bars need room.
            let keys: Vec<i32> = (0..n as i32).map(|i| i * 100 + 50).collect();
            let mut c = builder
                .build_cartesian_2d((0..n as i32 * 100).with_key_points(keys), y0..y1)
                .map_err(e)?;
            let names = categories.clone();
            let label = move |x: &i32| {
                let i = (*x / 100).max(0) as usize;
                names.get(i).cloned().unwrap_or_default()
            };
            c.configure_mesh()
                .disable_x_mesh()
                .x_desc(&chart.x_label)
                .y_desc(&chart.y_label)
                .x_label_formatter(&label)
                .label_style(("sans-serif", 15))
                .axis_desc_style(("sans-serif", 17))
                .draw()
                .map_err(e)?;
            let k = series.len().max(1) as i32;
            let width = 80 / k;
            for (j, (name, values)) in series.iter().enumerate() {
                let col = color(j);
                if bars {
                    let rects = values.iter().enumerate().filter_map(|(i, v)| {
                        let v = (*v)?;
                        let x = i as i32 * 100 + 10 + j as i32 * width;
                        Some(Rectangle::new([(x, 0.0), (x + width - 2, v)], col.filled()))
                    });
                    c.draw_series(rects)
                        .map_err(e)?
                        .label(name.as_str())
                        .legend(move |(x, y)| {
                            Rectangle::new([(x, y - 6), (x + 14, y + 6)], col.filled())
                        });
                } else {
                    let points: Vec<(i32, f64)> = values
                        .iter()
                        .enumerate()
                        .filter_map(|(i, v)| v.map(|v| (i as i32 * 100 + 50, v)))
                        .collect();
                    c.draw_series(LineSeries::new(points.clone(), col.stroke_width(2)))
                        .map_err(e)?
                        .label(name.as_str())
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2))
                        });
                    c.draw_series(points.into_iter().map(|p| Circle::new(p, 4, col.filled())))
                        .map_err(e)?;
                }
            }
            c.configure_series_labels()
                .label_font(("sans-serif", 15))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(e)?;
        }
    }
    root.present().map_err(e)
}

/// Draws `chart` into `dir/<stem>.png` and `dir/<stem>.svg` (each written atomically).
pub fn render(chart: &Chart, dir: &Path) -> Result<ChartFiles> {
    register_font();
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let png = dir.join(format!("{}.png", chart.stem));
    let svg = dir.join(format!("{}.svg", chart.stem));
    write_atomic_via_path(&png, ".png", |tmp| {
        let root = BitMapBackend::new(tmp, SIZE).into_drawing_area();
        draw(&root, chart).map_err(|message| Error::Chart {
            path: png.clone(),
            message,
        })
    })?;
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, SIZE).into_drawing_area();
        draw(&root, chart).map_err(|message| Error::Chart {
            path: svg.clone(),
            message,
        })?;
    }
    write_atomic(&svg, text.as_bytes())?;
    Ok(ChartFiles {
        title: chart.title.clone(),
        png,
        svg,
    })
}
