//! Drawing one chart: the title, the axes (integer ticks on step axes, category names on
//! category axes, as many decimals on the value axis as its ticks need), a frame around the
//! plotting area, the data of each [`ChartKind`], and the legend entries that describe it.

use plotters::coord::combinators::WithKeyPoints;
use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::{RangedCoordf64, RangedCoordi32};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::groups::Groups;
use super::legend::{
    self, err, point, Entry, Layout, Swatch, MARKER_EDGE, MARKER_R, TITLE_H, WIDTH,
};
use super::smooth::{ema, ema_span};
use super::{color, shape, CategorySeries, Chart, ChartKind, DrawResult, LossCurve};

/// Opacity of the per-step loss under its smoothed line.
const FAINT: f64 = 0.35;
/// Colour of legend entries that explain a line style rather than name a series.
const NEUTRAL: RGBColor = RGBColor(90, 90, 90);
const X_LABELS: usize = 10;
const Y_LABELS: usize = 8;
/// At most this many category names along x; beyond it every k-th is labelled.
const MAX_CATEGORY_LABELS: usize = 16;
/// x units per category (integers, so grouped bars have sub-positions).
const UNIT: i32 = 100;

/// The legend of `chart`: its series, and for the loss chart what faint line, solid line and
/// marker mean.
pub(crate) fn legend_entries(chart: &Chart) -> Vec<Entry> {
    let line = |c| Swatch::Line {
        color: c,
        opacity: 1.0,
        width: 2,
    };
    let named = |series: &CategorySeries, swatch: &dyn Fn(usize) -> Swatch| {
        series
            .iter()
            .enumerate()
            .map(|(i, (name, _))| Entry {
                label: name.clone(),
                swatch: swatch(i),
            })
            .collect()
    };
    match &chart.kind {
        ChartKind::Loss(curves) => {
            let mut out: Vec<Entry> = curves
                .iter()
                .enumerate()
                .map(|(i, c)| Entry {
                    label: c.name.clone(),
                    swatch: line(color(i)),
                })
                .collect();
            if !curves.is_empty() {
                out.push(Entry {
                    label: "per-step loss".into(),
                    swatch: Swatch::Line {
                        color: NEUTRAL,
                        opacity: FAINT,
                        width: 1,
                    },
                });
                out.push(Entry {
                    label: format!("EMA of per-step loss (span {})", loss_span(curves)),
                    swatch: line(NEUTRAL),
                });
            }
            if curves.iter().any(|c| !c.eval.is_empty()) {
                out.push(Entry {
                    label: "eval loss".into(),
                    swatch: Swatch::Marker(NEUTRAL),
                });
            }
            out
        }
        ChartKind::Bars { series, .. } => named(series, &|i| Swatch::Bar(color(i))),
        ChartKind::CategoryLines { series, .. } => {
            named(series, &|i| Swatch::LineMarker(color(i), shape(i)))
        }
    }
}

/// One span for every curve of a chart, from the longest, so their smoothing is alike.
fn loss_span(curves: &[LossCurve]) -> usize {
    ema_span(curves.iter().map(|c| c.train.len()).max().unwrap_or(0))
}

/// Draws the whole chart on `root`.
pub(crate) fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &Chart,
    layout: &Layout,
    entries: &[Entry],
    groups: &Groups,
) -> DrawResult {
    root.fill(&WHITE).map_err(err)?;
    groups.enter(root, "title", None);
    let title = TextStyle::from(("sans-serif", title_size(&chart.title)).into_font())
        .pos(Pos::new(HPos::Center, VPos::Center));
    root.draw(&Text::new(
        chart.title.clone(),
        ((WIDTH / 2) as i32, (TITLE_H / 2) as i32 + 2),
        title,
    ))
    .map_err(err)?;
    let r = layout.chart;
    let area = root.clone().shrink((r.x, r.y), (r.w, r.h));
    match &chart.kind {
        ChartKind::Loss(curves) => loss(root, &area, chart, curves, groups)?,
        ChartKind::Bars { categories, series } => {
            bars(root, &area, chart, categories, series, groups)?
        }
        ChartKind::CategoryLines { categories, series } => {
            category_lines(root, &area, chart, categories, series, groups)?
        }
    }
    if let Some(l) = &layout.legend {
        legend::draw(root, l, entries, groups)?;
    }
    root.present().map_err(err)
}

/// The title's font size: 24, smaller for a title that would not fit the width.
fn title_size(title: &str) -> u32 {
    (12..=24)
        .rev()
        .find(|&size| {
            ("sans-serif", size)
                .into_font()
                .box_size(title)
                .is_ok_and(|(w, _)| w + 32 <= WIDTH)
        })
        .unwrap_or(12)
}

fn builder<'a, 'b, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
) -> ChartBuilder<'a, 'b, DB> {
    let mut b = ChartBuilder::on(area);
    b.margin(16).x_label_area_size(56).y_label_area_size(80);
    b
}

/// `(low, high)` of the finite values with 8 % headroom (from zero when `from_zero`).
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
        hi = lo + lo.abs().max(1.0) * 0.5;
    }
    let pad = (hi - lo) * 0.08;
    (if from_zero { lo } else { lo - pad }, hi + pad)
}

/// Decimals `v` needs to be written exactly (up to 6).
fn decimals_needed(v: f64) -> usize {
    (0..6)
        .find(|&d| {
            let s = 10f64.powi(d as i32);
            ((v * s).round() - v * s).abs() < 1e-6
        })
        .unwrap_or(6)
}

/// Value-axis labels with the decimals the axis's ticks need, the same for every tick
/// (`0`, `500`, `1000`; `3.2`, `3.4`), never a bare `5.0`.
fn y_formatter(y0: f64, y1: f64) -> impl Fn(&f64) -> String {
    let keys = RangedCoordf64::from(y0..y1).key_points(Y_LABELS);
    let decimals = keys.iter().map(|v| decimals_needed(*v)).max().unwrap_or(0);
    let tiny = 0.5 * 10f64.powi(-(decimals as i32));
    move |v: &f64| {
        let v = if v.abs() < tiny { 0.0 } else { *v };
        format!("{v:.decimals$}")
    }
}

/// Grid, x axis, y axis (each its own SVG group), then the frame of the plotting area.
fn axes<DB, X, Y>(
    root: &DrawingArea<DB, Shift>,
    c: &mut ChartContext<'_, DB, Cartesian2d<X, Y>>,
    chart: &Chart,
    groups: &Groups,
    x_fmt: &dyn Fn(&X::ValueType) -> String,
    y_fmt: &dyn Fn(&Y::ValueType) -> String,
) -> DrawResult
where
    DB: DrawingBackend,
    X: Ranged + ValueFormatter<<X as Ranged>::ValueType>,
    Y: Ranged + ValueFormatter<<Y as Ranged>::ValueType>,
{
    let (label, desc) = (("sans-serif", 15), ("sans-serif", 17));
    groups.enter(root, "grid", None);
    c.configure_mesh()
        .disable_x_axis()
        .disable_y_axis()
        .disable_x_mesh()
        .y_labels(Y_LABELS)
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(225, 225, 225))
        .draw()
        .map_err(err)?;
    groups.enter(root, "x-axis", None);
    c.configure_mesh()
        .disable_mesh()
        .disable_y_axis()
        .x_labels(X_LABELS)
        .x_label_formatter(x_fmt)
        .x_desc(&chart.x_label)
        .label_style(label)
        .axis_desc_style(desc)
        .draw()
        .map_err(err)?;
    groups.enter(root, "y-axis", None);
    c.configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_labels(Y_LABELS)
        .y_label_formatter(y_fmt)
        .y_desc(&chart.y_label)
        .label_style(label)
        .axis_desc_style(desc)
        .draw()
        .map_err(err)?;
    let (xr, yr) = c.plotting_area().get_pixel_range();
    groups.enter(root, "plot-frame", None);
    root.draw(&Rectangle::new(
        [(xr.start, yr.start), (xr.end - 1, yr.end - 1)],
        RGBColor(120, 120, 120).stroke_width(1),
    ))
    .map_err(err)
}

/// Loss over optimizer steps: per run the per-step loss faint, its EMA solid, eval losses as
/// outlined markers; x is an integer axis.
fn loss<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    area: &DrawingArea<DB, Shift>,
    chart: &Chart,
    curves: &[LossCurve],
    groups: &Groups,
) -> DrawResult {
    let points = || curves.iter().flat_map(|c| c.train.iter().chain(&c.eval));
    let (lo, hi) = points().fold((usize::MAX, 0), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (lo, hi) = if lo > hi { (0, 1) } else { (lo, hi) };
    let pad = ((hi - lo) / 20).max(1);
    let x = (lo.saturating_sub(pad) as i32)..((hi + pad) as i32);
    let (y0, y1) = range_with_margin(points().map(|p| p.1), false);
    let mut c = builder(area).build_cartesian_2d(x, y0..y1).map_err(err)?;
    axes(
        root,
        &mut c,
        chart,
        groups,
        &|v: &i32| v.to_string(),
        &y_formatter(y0, y1),
    )?;
    let span = loss_span(curves);
    let finite = |p: &[(usize, f64)]| -> Vec<(i32, f64)> {
        p.iter()
            .filter(|q| q.1.is_finite())
            .map(|&(s, l)| (s as i32, l))
            .collect()
    };
    for (i, curve) in curves.iter().enumerate() {
        let col = color(i);
        groups.enter(root, "series", Some(&curve.name));
        let raw = finite(&curve.train);
        let values: Vec<f64> = raw.iter().map(|p| p.1).collect();
        let smooth: Vec<(i32, f64)> = raw.iter().map(|p| p.0).zip(ema(&values, span)).collect();
        c.draw_series(LineSeries::new(raw.clone(), col.mix(FAINT).stroke_width(1)))
            .map_err(err)?;
        c.draw_series(LineSeries::new(smooth, col.stroke_width(2)))
            .map_err(err)?;
        if raw.len() == 1 {
            c.draw_series(raw.iter().map(|p| Circle::new(*p, 3, col.filled())))
                .map_err(err)?;
        }
        let eval = finite(&curve.eval);
        if !eval.is_empty() {
            groups.enter(root, "eval-loss", Some(&curve.name));
            c.draw_series(eval.iter().map(|p| Circle::new(*p, MARKER_R, col.filled())))
                .map_err(err)?;
            c.draw_series(
                eval.iter()
                    .map(|p| Circle::new(*p, MARKER_R, MARKER_EDGE.stroke_width(1))),
            )
            .map_err(err)?;
        }
    }
    Ok(())
}

/// The category axis: `UNIT` x units per category, a tick at each labelled category's centre.
fn category_axis(
    categories: &[String],
) -> (WithKeyPoints<RangedCoordi32>, impl Fn(&i32) -> String) {
    let n = categories.len().max(1);
    let stride = n.div_ceil(MAX_CATEGORY_LABELS);
    let keys: Vec<i32> = (0..n)
        .step_by(stride)
        .map(|i| i as i32 * UNIT + UNIT / 2)
        .collect();
    let names = categories.to_vec();
    let label = move |x: &i32| {
        names
            .get((*x / UNIT).max(0) as usize)
            .cloned()
            .unwrap_or_default()
    };
    ((0..n as i32 * UNIT).with_key_points(keys), label)
}

/// Grouped bars from zero, one colour per series.
fn bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    area: &DrawingArea<DB, Shift>,
    chart: &Chart,
    categories: &[String],
    series: &CategorySeries,
    groups: &Groups,
) -> DrawResult {
    let (y0, y1) = range_with_margin(
        series.iter().flat_map(|(_, v)| v.iter().flatten().copied()),
        true,
    );
    let (x, label) = category_axis(categories);
    let mut c = builder(area).build_cartesian_2d(x, y0..y1).map_err(err)?;
    axes(root, &mut c, chart, groups, &label, &y_formatter(y0, y1))?;
    let width = (UNIT - 20) / series.len().max(1) as i32;
    for (j, (name, values)) in series.iter().enumerate() {
        let col = color(j);
        groups.enter(root, "series", Some(name));
        let rects = values.iter().enumerate().filter_map(|(i, v)| {
            let v = (*v).filter(|v| v.is_finite())?;
            let x = i as i32 * UNIT + 10 + j as i32 * width;
            Some(Rectangle::new([(x, 0.0), (x + width - 2, v)], col.filled()))
        });
        c.draw_series(rects).map_err(err)?;
    }
    Ok(())
}

/// One polyline per series through its categories with a value (from zero, so a change
/// reads in proportion), a marker on each point.
fn category_lines<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    area: &DrawingArea<DB, Shift>,
    chart: &Chart,
    categories: &[String],
    series: &CategorySeries,
    groups: &Groups,
) -> DrawResult {
    let (y0, y1) = range_with_margin(
        series.iter().flat_map(|(_, v)| v.iter().flatten().copied()),
        true,
    );
    let (x, label) = category_axis(categories);
    let mut c = builder(area).build_cartesian_2d(x, y0..y1).map_err(err)?;
    axes(root, &mut c, chart, groups, &label, &y_formatter(y0, y1))?;
    for (j, (name, values)) in series.iter().enumerate() {
        let col = color(j);
        let points: Vec<(i32, f64)> = values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                v.filter(|v| v.is_finite())
                    .map(|v| (i as i32 * UNIT + UNIT / 2, v))
            })
            .collect();
        groups.enter(root, "series", Some(name));
        if points.len() > 1 {
            c.draw_series(LineSeries::new(points.clone(), col.stroke_width(2)))
                .map_err(err)?;
        }
        for p in &points {
            point(root, c.backend_coord(p), shape(j), col)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_labels_carry_the_decimals_their_ticks_need() {
        let f = y_formatter(0.0, 4000.0);
        assert_eq!((f(&0.0), f(&1000.0)), ("0".to_string(), "1000".to_string()));
        let f = y_formatter(3.1, 4.2);
        assert_eq!(f(&3.2), "3.2");
        assert_eq!(f(&4.0), "4.0", "the same decimals on every tick");
        assert_eq!(decimals_needed(5.0), 0);
        assert_eq!(decimals_needed(0.25), 2);
    }

    #[test]
    fn a_long_title_gets_a_smaller_font() {
        super::super::register_font();
        assert_eq!(title_size("Training and eval loss"), 24);
        let long =
            "Trained tokens/s per commit (median of repeats), every method, machine and config";
        let long = format!("{long} {long}");
        let long = long.as_str();
        let size = title_size(long);
        assert!(size < 24, "{size}");
        let (w, _) = ("sans-serif", size).into_font().box_size(long).unwrap();
        assert!(w + 32 <= WIDTH);
    }

    #[test]
    fn ranges_have_headroom_and_survive_empty_or_flat_data() {
        assert_eq!(range_with_margin(std::iter::empty(), false), (0.0, 1.0));
        let (lo, hi) = range_with_margin([2.0, 2.0].into_iter(), false);
        assert!(lo < 2.0 && hi > 2.0);
        let (lo, hi) = range_with_margin([5.0, 10.0, f64::NAN].into_iter(), true);
        assert_eq!(lo, 0.0);
        assert!(hi > 10.0);
    }

    #[test]
    fn many_categories_label_every_kth() {
        let names: Vec<String> = (0..40).map(|i| format!("c{i}")).collect();
        let (axis, label) = category_axis(&names);
        let keys = axis.bold_points();
        assert!(
            keys.len() <= MAX_CATEGORY_LABELS && keys.len() >= 10,
            "{keys:?}"
        );
        assert_eq!(label(&keys[1]), "c3");
    }
}
