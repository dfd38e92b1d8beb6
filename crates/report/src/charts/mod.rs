//! Charts drawn with plotters, each written as PNG and SVG. Text uses DejaVu Sans, embedded in
//! the binary (`assets/DejaVuSans.ttf`, Bitstream Vera licence, see
//! `assets/DejaVuSans-LICENSE.txt`) and registered as `sans-serif`, so PNGs need no system
//! fonts. Every chart has a title and axis labels with units; its legend sits outside the
//! plotting area, axes that count steps have integer ticks, and the SVG groups its parts
//! (`<g class="…">`: `title`, `grid`, `x-axis`, `y-axis`, `plot-frame`, `series` and
//! `eval-loss` with `data-series="<name>"`, `legend`).
//!
//! - `draw`: axes and data of each [`ChartKind`];
//! - `legend`: legend entries, where the legend goes (right of the plot, or below it when it
//!   is too wide or long), and drawing it;
//! - [`smooth`]: the smoothed loss line (bias-corrected EMA);
//! - `groups`: the named groups in the SVG.

mod draw;
mod groups;
mod legend;
pub mod smooth;

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::prelude::*;
use tb_gguf::fsio::{write_atomic, write_atomic_via_path};

use crate::error::{io, Error, Result};

use groups::Groups;
use legend::Layout;

static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

/// `(series name, value per category)` lists of category charts.
pub type CategorySeries = Vec<(String, Vec<Option<f64>>)>;

/// One training run's loss over optimizer steps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LossCurve {
    /// Legend name (`peft #1`).
    pub name: String,
    /// `(step, training loss)` of each logged step: drawn faint, with the smoothed line over it.
    pub train: Vec<(usize, f64)>,
    /// `(step, eval loss)` where an evaluation ran: drawn as markers.
    pub eval: Vec<(usize, f64)>,
}

/// What to draw.
#[derive(Debug, Clone, PartialEq)]
pub enum ChartKind {
    /// Loss curves over optimizer steps (an integer axis): each run's per-step loss faint, its
    /// bias-corrected EMA as the run's line, eval losses as markers.
    Loss(Vec<LossCurve>),
    /// Bars over categories: each series has one optional value per category (missing values
    /// leave a gap).
    Bars {
        /// Category names along x.
        categories: Vec<String>,
        /// `(series name, value per category)`.
        series: CategorySeries,
    },
    /// Lines over categories (e.g. commits, oldest first): one polyline per series through the
    /// categories that have a value, a marker on each point.
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

/// A plotters failure, as text (its error types differ per backend).
type DrawResult = std::result::Result<(), String>;

fn register_font() {
    REGISTER.call_once(|| {
        if plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_err() {
            tracing::error!("the embedded DejaVu Sans font could not be parsed");
        }
    });
}

/// Series colours (matplotlib's `tab10`).
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The colour of the i-th series.
fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

/// The point shape of the i-th line series: circles for the first ten colours, then
/// triangles, then squares, so two lines that share a colour still differ.
fn shape(i: usize) -> legend::Shape {
    match (i / COLORS.len()) % 3 {
        0 => legend::Shape::Circle,
        1 => legend::Shape::Triangle,
        _ => legend::Shape::Square,
    }
}

/// Draws `chart` into `dir/<stem>.png` and `dir/<stem>.svg` (each written atomically). The
/// image is 960×540, taller when the legend goes below the plot.
pub fn render(chart: &Chart, dir: &Path) -> Result<ChartFiles> {
    register_font();
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let entries = draw::legend_entries(chart);
    let layout = Layout::new(&entries);
    let png = dir.join(format!("{}.png", chart.stem));
    let svg = dir.join(format!("{}.svg", chart.stem));
    write_atomic_via_path(&png, ".png", |tmp| {
        let root = BitMapBackend::new(tmp, layout.size).into_drawing_area();
        draw::draw(&root, chart, &layout, &entries, &Groups::none()).map_err(|message| {
            Error::Chart {
                path: png.clone(),
                message,
            }
        })
    })?;
    let groups = Groups::recording();
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, layout.size).into_drawing_area();
        draw::draw(&root, chart, &layout, &entries, &groups).map_err(|message| Error::Chart {
            path: svg.clone(),
            message,
        })?;
    }
    write_atomic(&svg, groups.apply(&text).as_bytes())?;
    Ok(ChartFiles {
        title: chart.title.clone(),
        png,
        svg,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn thirty_lines_differ_in_colour_or_marker() {
        let styles: std::collections::HashSet<String> = (0..30)
            .map(|i| format!("{:?} {:?}", super::color(i), super::shape(i)))
            .collect();
        assert_eq!(styles.len(), 30);
    }
}
