//! Named groups in the SVG output, so a reader (or a test) can tell the plot frame, the axes,
//! the legend and each series apart: `<g class="legend">`, `<g class="series" data-series="…">`.
//!
//! plotters' SVG backend writes one element per line in drawing order and has no groups. While
//! drawing the SVG, [`Groups::enter`] draws a sentinel: a 1×1 pixel at (0, 0) whose colour
//! encodes the group's index. [`Groups::apply`] then replaces each sentinel line with the
//! group's tags. The PNG pass uses [`Groups::none`], which draws nothing.

use std::cell::RefCell;

use plotters::coord::Shift;
use plotters::prelude::*;

/// Red channel of every sentinel colour; green and blue hold the group index + 1.
const SENTINEL_RED: u8 = 0xFE;

/// Group bookkeeping of one drawing pass.
#[derive(Debug, Default)]
pub(crate) struct Groups {
    /// `None`: a pass that records no groups (the PNG).
    attrs: Option<RefCell<Vec<String>>>,
}

impl Groups {
    /// A pass without groups.
    pub(crate) fn none() -> Self {
        Self { attrs: None }
    }

    /// A pass that records groups (the SVG).
    pub(crate) fn recording() -> Self {
        Self {
            attrs: Some(RefCell::new(Vec::new())),
        }
    }

    /// Elements drawn from now on belong to a group of `class` (and `data-series`, when given);
    /// the previous group ends here.
    pub(crate) fn enter<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        class: &str,
        series: Option<&str>,
    ) {
        let Some(attrs) = &self.attrs else { return };
        let mut text = format!("class=\"{}\"", escape(class));
        if let Some(s) = series {
            text.push_str(&format!(" data-series=\"{}\"", escape(s)));
        }
        let index = {
            let mut list = attrs.borrow_mut();
            list.push(text);
            list.len()
        };
        // A failed sentinel only loses the grouping, never the drawing.
        let _ = root.draw_pixel((0, 0), &sentinel(index));
    }

    /// Rewrites the sentinels of `svg` into `<g>` tags (closing each group where the next
    /// begins and the last before `</svg>`).
    pub(crate) fn apply(&self, svg: &str) -> String {
        let Some(attrs) = &self.attrs else {
            return svg.to_string();
        };
        let attrs = attrs.borrow();
        let mut out = String::with_capacity(svg.len() + attrs.len() * 48);
        let mut open = false;
        for line in svg.lines() {
            if let Some(index) = sentinel_index(line) {
                if open {
                    out.push_str("</g>\n");
                }
                open = match attrs.get(index - 1) {
                    Some(a) => {
                        out.push_str(&format!("<g {a}>\n"));
                        true
                    }
                    None => false,
                };
                continue;
            }
            if line == "</svg>" && open {
                out.push_str("</g>\n");
                open = false;
            }
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

fn sentinel(index: usize) -> RGBColor {
    RGBColor(SENTINEL_RED, (index >> 8) as u8, (index & 0xFF) as u8)
}

/// The group index a sentinel line stands for.
fn sentinel_index(line: &str) -> Option<usize> {
    let hex = line
        .strip_prefix(
            "<rect x=\"0\" y=\"0\" width=\"1\" height=\"1\" stroke=\"none\" opacity=\"1\" fill=\"#",
        )?
        .strip_suffix("\"/>")?;
    if hex.len() != 6 || !hex.starts_with(&format!("{SENTINEL_RED:02X}")) {
        return None;
    }
    usize::from_str_radix(&hex[2..], 16).ok().filter(|i| *i > 0)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinels_become_groups_and_nothing_else_changes() {
        let groups = Groups::recording();
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (40, 30)).into_drawing_area();
            root.fill(&WHITE).unwrap();
            groups.enter(&root, "legend", None);
            root.draw(&Rectangle::new([(1, 1), (5, 5)], BLUE.filled()))
                .unwrap();
            groups.enter(&root, "series", Some("peft <1> & \"x\""));
            root.draw(&Circle::new((9, 9), 2, RED.filled())).unwrap();
            root.present().unwrap();
        }
        let out = groups.apply(&svg);
        assert!(
            !out.contains("#FE0001") && !out.contains("#FE0002"),
            "{out}"
        );
        let legend = out.find("<g class=\"legend\">").expect("legend group");
        let series = out
            .find("<g class=\"series\" data-series=\"peft &lt;1&gt; &amp; &quot;x&quot;\">")
            .expect("series group");
        assert!(legend < out.find("<rect x=\"1\"").unwrap());
        assert!(series > out.find("<rect x=\"1\"").unwrap());
        assert_eq!(out.matches("<g ").count(), out.matches("</g>").count());
        assert!(
            out.ends_with("</g>\n</svg>\n"),
            "the last group closes before </svg>"
        );
        assert_eq!(Groups::none().apply(&svg), svg, "a pass without groups");
    }
}
