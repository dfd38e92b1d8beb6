//! Legends outside the data. [`Layout::new`] measures the entries with the embedded font and
//! puts the legend to the right of the plot when it is narrow and short enough, otherwise in
//! columns below it (the image grows taller); either way its box never overlaps the plotting
//! area, which is what a figure in a paper does.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::groups::Groups;
use super::DrawResult;

/// Radius of a point marker (eval loss).
pub(crate) const MARKER_R: u32 = 5;
/// Outline of a point marker, so it stands out on a line of its own colour.
pub(crate) const MARKER_EDGE: RGBColor = RGBColor(40, 40, 40);

/// Width of every chart, pixels.
pub(crate) const WIDTH: u32 = 960;
/// Height of the title and plot, pixels (a legend below adds to it).
pub(crate) const HEIGHT: u32 = 540;
/// Height of the title band.
pub(crate) const TITLE_H: u32 = 44;
/// Font size of legend entries.
const FONT: u32 = 15;
const ROW_H: u32 = 22;
const PAD: u32 = 10;
const SWATCH_W: u32 = 28;
const SWATCH_GAP: u32 = 8;
const COLUMN_GAP: u32 = 24;
const MARGIN: u32 = 16;
/// The widest legend that goes to the right of the plot.
const MAX_RIGHT_W: u32 = 300;

/// What a legend entry shows next to its label.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Swatch {
    /// A line segment (`opacity` < 1 for faint lines).
    Line {
        /// Colour.
        color: RGBColor,
        /// 0–1.
        opacity: f64,
        /// Stroke width.
        width: u32,
    },
    /// A line with a point marker on it.
    LineMarker(RGBColor, Shape),
    /// A filled point marker with an outline.
    Marker(RGBColor),
    /// A filled bar.
    Bar(RGBColor),
}

/// The shape of a line's point markers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Circle,
    Triangle,
    Square,
}

/// Draws a filled point marker of `shape` centred on pixel `at` of `root`.
pub(crate) fn point<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    at: (i32, i32),
    shape: Shape,
    color: RGBColor,
) -> DrawResult {
    let (x, y) = at;
    match shape {
        Shape::Circle => root.draw(&Circle::new(at, 4, color.filled())),
        Shape::Triangle => root.draw(&Polygon::new(
            vec![(x, y - 6), (x - 5, y + 4), (x + 5, y + 4)],
            color.filled(),
        )),
        Shape::Square => root.draw(&Rectangle::new(
            [(x - 4, y - 4), (x + 4, y + 4)],
            color.filled(),
        )),
    }
    .map_err(err)
}

/// One legend entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    /// Label.
    pub label: String,
    /// What is drawn beside it.
    pub swatch: Swatch,
}

/// A rectangle in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rect {
    pub x: i32,
    pub y: i32,
    pub w: u32,
    pub h: u32,
}

/// The legend's box and its grid of entries.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LegendBox {
    /// The box, border included.
    pub rect: Rect,
    /// Entries per row.
    pub columns: usize,
    /// Width of one column.
    pub column_w: u32,
    /// Labels, shortened with "…" where one would not fit the image.
    pub labels: Vec<String>,
}

/// Where the title, the chart (axes and plot) and the legend go.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Layout {
    /// Image size.
    pub size: (u32, u32),
    /// The area the axes and the plot are drawn in (below the title, beside or above the
    /// legend).
    pub chart: Rect,
    /// The legend, when there are entries.
    pub legend: Option<LegendBox>,
}

fn text_width(text: &str) -> u32 {
    ("sans-serif", FONT)
        .into_font()
        .box_size(text)
        .map(|(w, _)| w)
        .unwrap_or_else(|_| text.chars().count() as u32 * FONT * 6 / 10)
}

/// `text`, cut at a character boundary and ended with "…" so that it is at most `max` wide.
fn fit(text: &str, max: u32) -> String {
    if text_width(text) <= max {
        return text.to_string();
    }
    let chars: Vec<char> = text.chars().collect();
    let mut n = chars.len();
    while n > 1 {
        n -= 1;
        let cut: String = chars[..n].iter().collect::<String>() + "…";
        if text_width(&cut) <= max {
            return cut;
        }
    }
    "…".into()
}

impl Layout {
    /// The layout for `entries` (no legend when there are none).
    pub(crate) fn new(entries: &[Entry]) -> Self {
        let chart_h = HEIGHT - TITLE_H;
        if entries.is_empty() {
            return Self {
                size: (WIDTH, HEIGHT),
                chart: Rect {
                    x: 0,
                    y: TITLE_H as i32,
                    w: WIDTH,
                    h: chart_h,
                },
                legend: None,
            };
        }
        let max_label = WIDTH - 2 * MARGIN - 2 * PAD - SWATCH_W - SWATCH_GAP;
        let labels: Vec<String> = entries.iter().map(|e| fit(&e.label, max_label)).collect();
        let entry_w =
            labels.iter().map(|l| text_width(l)).max().unwrap_or(0) + SWATCH_W + SWATCH_GAP;
        let n = entries.len() as u32;
        let right_w = entry_w + 2 * PAD;
        let right_h = n * ROW_H + 2 * PAD;
        if right_w <= MAX_RIGHT_W && right_h + 2 * MARGIN <= chart_h {
            let chart_w = WIDTH - right_w - MARGIN;
            return Self {
                size: (WIDTH, HEIGHT),
                chart: Rect {
                    x: 0,
                    y: TITLE_H as i32,
                    w: chart_w,
                    h: chart_h,
                },
                legend: Some(LegendBox {
                    rect: Rect {
                        x: chart_w as i32,
                        y: (TITLE_H + MARGIN) as i32,
                        w: right_w,
                        h: right_h,
                    },
                    columns: 1,
                    column_w: entry_w,
                    labels,
                }),
            };
        }
        let usable = WIDTH - 2 * MARGIN - 2 * PAD;
        let columns = ((usable + COLUMN_GAP) / (entry_w + COLUMN_GAP)).clamp(1, n);
        let rows = n.div_ceil(columns);
        let w = columns * entry_w + (columns - 1) * COLUMN_GAP + 2 * PAD;
        let h = rows * ROW_H + 2 * PAD;
        Self {
            size: (WIDTH, HEIGHT + h + MARGIN),
            chart: Rect {
                x: 0,
                y: TITLE_H as i32,
                w: WIDTH,
                h: chart_h,
            },
            legend: Some(LegendBox {
                rect: Rect {
                    x: ((WIDTH - w) / 2) as i32,
                    y: HEIGHT as i32,
                    w,
                    h,
                },
                columns: columns as usize,
                column_w: entry_w + COLUMN_GAP,
                labels,
            }),
        }
    }
}

pub(crate) fn err<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> String {
    e.to_string()
}

/// Draws the legend box and its entries on `root`.
pub(crate) fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    legend: &LegendBox,
    entries: &[Entry],
    groups: &Groups,
) -> DrawResult {
    groups.enter(root, "legend", None);
    let r = legend.rect;
    let (x1, y1) = (r.x + r.w as i32, r.y + r.h as i32);
    root.draw(&Rectangle::new([(r.x, r.y), (x1, y1)], WHITE.filled()))
        .map_err(err)?;
    root.draw(&Rectangle::new(
        [(r.x, r.y), (x1, y1)],
        RGBColor(160, 160, 160).stroke_width(1),
    ))
    .map_err(err)?;
    let style =
        TextStyle::from(("sans-serif", FONT).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for (i, (entry, label)) in entries.iter().zip(&legend.labels).enumerate() {
        let (row, col) = (i / legend.columns, i % legend.columns);
        let x = r.x + (PAD + col as u32 * legend.column_w) as i32;
        let y = r.y + (PAD + row as u32 * ROW_H + ROW_H / 2) as i32;
        swatch(root, entry.swatch, x, y)?;
        root.draw(&Text::new(
            label.clone(),
            (x + (SWATCH_W + SWATCH_GAP) as i32, y),
            style.clone(),
        ))
        .map_err(err)?;
    }
    Ok(())
}

fn swatch<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    swatch: Swatch,
    x: i32,
    y: i32,
) -> DrawResult {
    let line = |color: RGBColor, opacity: f64, width: u32| {
        PathElement::new(
            vec![(x, y), (x + SWATCH_W as i32, y)],
            color.mix(opacity).stroke_width(width),
        )
    };
    let mid = (x + SWATCH_W as i32 / 2, y);
    match swatch {
        Swatch::Line {
            color,
            opacity,
            width,
        } => root.draw(&line(color, opacity, width)).map_err(err),
        Swatch::LineMarker(color, shape) => {
            root.draw(&line(color, 1.0, 2)).map_err(err)?;
            point(root, mid, shape, color)
        }
        Swatch::Marker(color) => {
            root.draw(&Circle::new(mid, MARKER_R, color.filled()))
                .map_err(err)?;
            root.draw(&Circle::new(mid, MARKER_R, MARKER_EDGE.stroke_width(1)))
                .map_err(err)
        }
        Swatch::Bar(color) => root
            .draw(&Rectangle::new(
                [(mid.0 - 7, y - 6), (mid.0 + 7, y + 6)],
                color.filled(),
            ))
            .map_err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(labels: &[&str]) -> Vec<Entry> {
        labels
            .iter()
            .map(|l| Entry {
                label: l.to_string(),
                swatch: Swatch::Bar(RGBColor(0, 0, 0)),
            })
            .collect()
    }

    fn disjoint(a: Rect, b: Rect) -> bool {
        a.x + a.w as i32 <= b.x
            || b.x + b.w as i32 <= a.x
            || a.y + a.h as i32 <= b.y
            || b.y + b.h as i32 <= a.y
    }

    #[test]
    fn short_legends_go_right_long_ones_below_and_never_overlap_the_chart() {
        super::super::register_font();
        let right = Layout::new(&entries(&["peft (embedded)", "unsloth (embedded)"]));
        let l = right.legend.clone().unwrap();
        assert_eq!((right.size, l.columns), ((WIDTH, HEIGHT), 1));
        assert!(l.rect.x >= right.chart.x + right.chart.w as i32);
        assert!(disjoint(l.rect, right.chart));
        let long = "peft · AMD EPYC [AuthenticAMD 25/17] x2 24GiB avx2+fma+avx512f+avx512_bf16";
        let below = Layout::new(&entries(&[long, long, long]));
        let l = below.legend.clone().unwrap();
        assert!(l.rect.y >= below.chart.y + below.chart.h as i32);
        assert!(below.size.1 > HEIGHT && l.rect.y + l.rect.h as i32 <= below.size.1 as i32);
        assert!(disjoint(l.rect, below.chart));
        let many: Vec<String> = (0..40).map(|i| format!("series {i}")).collect();
        let many = Layout::new(&entries(
            &many.iter().map(String::as_str).collect::<Vec<_>>(),
        ));
        let l = many.legend.unwrap();
        assert!(l.columns > 1, "short labels below share rows");
        assert!(l.rect.x >= 0 && l.rect.x + l.rect.w as i32 <= WIDTH as i32);
        assert!(Layout::new(&[]).legend.is_none());
    }

    #[test]
    fn a_label_wider_than_the_image_is_shortened() {
        super::super::register_font();
        let huge = "x".repeat(400);
        let l = Layout::new(&entries(&[&huge])).legend.unwrap();
        assert!(l.labels[0].ends_with('…') && l.labels[0].len() < huge.len());
        assert!(l.rect.x >= 0 && l.rect.x + l.rect.w as i32 <= WIDTH as i32);
    }
}
