//! A small reader of the charts' SVG: every element with its attributes, its text and the
//! `<g class=… data-series=…>` group it sits in, and the boxes the layout tests compare.

#![allow(dead_code)]

use std::collections::HashMap;

/// One SVG element.
#[derive(Debug, Clone, Default)]
pub struct Element {
    pub name: String,
    pub attrs: HashMap<String, String>,
    /// `class` of the enclosing `<g>`.
    pub group: String,
    /// `data-series` of the enclosing `<g>`.
    pub series: String,
    /// Character content (`<text>`).
    pub text: String,
}

impl Element {
    pub fn num(&self, key: &str) -> f64 {
        self.attrs
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("<{}> has no numeric `{key}`: {:?}", self.name, self.attrs))
    }

    /// `points` of a polyline or polygon.
    pub fn points(&self) -> Vec<(f64, f64)> {
        self.attrs
            .get("points")
            .map(|p| {
                p.split_whitespace()
                    .filter_map(|xy| xy.split_once(','))
                    .map(|(x, y)| (x.parse().unwrap(), y.parse().unwrap()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The box the element covers; a text is taken as its anchor point.
    pub fn bbox(&self) -> Box2 {
        match self.name.as_str() {
            "rect" => Box2::new(
                self.num("x"),
                self.num("y"),
                self.num("x") + self.num("width"),
                self.num("y") + self.num("height"),
            ),
            "circle" => {
                let (x, y, r) = (self.num("cx"), self.num("cy"), self.num("r"));
                Box2::new(x - r, y - r, x + r, y + r)
            }
            "line" => Box2::new(
                self.num("x1"),
                self.num("y1"),
                self.num("x2"),
                self.num("y2"),
            ),
            "text" => Box2::new(self.num("x"), self.num("y"), self.num("x"), self.num("y")),
            _ => Box2::around(&self.points()),
        }
    }

    pub fn opacity(&self) -> f64 {
        self.attrs
            .get("opacity")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1.0)
    }
}

/// An axis-aligned box `[x0, x1] × [y0, y1]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Box2 {
    pub x0: f64,
    pub y0: f64,
    pub x1: f64,
    pub y1: f64,
}

impl Box2 {
    pub fn new(x0: f64, y0: f64, x1: f64, y1: f64) -> Self {
        Self {
            x0: x0.min(x1),
            y0: y0.min(y1),
            x1: x0.max(x1),
            y1: y0.max(y1),
        }
    }

    pub fn around(points: &[(f64, f64)]) -> Self {
        let mut b = Self {
            x0: f64::INFINITY,
            y0: f64::INFINITY,
            x1: f64::NEG_INFINITY,
            y1: f64::NEG_INFINITY,
        };
        for &(x, y) in points {
            b = b.union(Self::new(x, y, x, y));
        }
        b
    }

    pub fn union(self, o: Self) -> Self {
        Self {
            x0: self.x0.min(o.x0),
            y0: self.y0.min(o.y0),
            x1: self.x1.max(o.x1),
            y1: self.y1.max(o.y1),
        }
    }

    /// Whether the interiors overlap (touching edges do not count).
    pub fn overlaps(self, o: Self) -> bool {
        self.x0 < o.x1 && o.x0 < self.x1 && self.y0 < o.y1 && o.y0 < self.y1
    }

    pub fn contains(self, o: Self) -> bool {
        self.x0 <= o.x0 && self.y0 <= o.y0 && o.x1 <= self.x1 && o.y1 <= self.y1
    }
}

fn attrs(tag: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = tag;
    while let Some(eq) = rest.find("=\"") {
        let key = rest[..eq]
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        let after = &rest[eq + 2..];
        let end = after.find('"').expect("closing quote");
        let value = after[..end]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&");
        out.insert(key, value);
        rest = &after[end + 1..];
    }
    out
}

/// Every element of `svg` (groups themselves excluded), in document order.
pub fn parse(svg: &str) -> Vec<Element> {
    let mut out: Vec<Element> = Vec::new();
    let mut group: Vec<(String, String)> = Vec::new();
    let mut in_text: Option<usize> = None;
    let mut rest = svg;
    while let Some(start) = rest.find('<') {
        if let Some(i) = in_text {
            out[i].text.push_str(rest[..start].trim());
        }
        let end = rest[start..].find('>').expect("unterminated tag") + start;
        let tag = &rest[start + 1..end];
        rest = &rest[end + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            match name.trim() {
                "g" => {
                    group.pop();
                }
                "text" => in_text = None,
                _ => {}
            }
            continue;
        }
        let name = tag
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        let a = attrs(tag);
        if name == "g" {
            group.push((
                a.get("class").cloned().unwrap_or_default(),
                a.get("data-series").cloned().unwrap_or_default(),
            ));
            continue;
        }
        let (g, s) = group.last().cloned().unwrap_or_default();
        out.push(Element {
            name: name.clone(),
            attrs: a,
            group: g,
            series: s,
            text: String::new(),
        });
        if name == "text" && !tag.ends_with('/') {
            in_text = Some(out.len() - 1);
        }
    }
    out
}

/// A chart's SVG, parsed.
pub struct Svg {
    pub text: String,
    pub elements: Vec<Element>,
}

impl Svg {
    pub fn read(path: &std::path::Path) -> Self {
        let text = std::fs::read_to_string(path).unwrap();
        let elements = parse(&text);
        Self { text, elements }
    }

    pub fn in_group<'a>(&'a self, class: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.elements.iter().filter(move |e| e.group == class)
    }

    pub fn size(&self) -> (f64, f64) {
        let svg = self
            .elements
            .iter()
            .find(|e| e.name == "svg")
            .expect("<svg>");
        (svg.num("width"), svg.num("height"))
    }

    /// The frame drawn around the plotting area.
    pub fn plot_area(&self) -> Box2 {
        let frames: Vec<&Element> = self.in_group("plot-frame").collect();
        assert_eq!(frames.len(), 1, "one plot frame");
        frames[0].bbox()
    }

    /// The legend's box (its first element, drawn under the entries).
    pub fn legend_box(&self) -> Option<Box2> {
        self.in_group("legend").next().map(Element::bbox)
    }

    /// Every element of the legend together.
    pub fn legend_extent(&self) -> Option<Box2> {
        self.in_group("legend")
            .map(Element::bbox)
            .reduce(Box2::union)
    }

    /// The texts of a group, in order.
    pub fn texts(&self, class: &str) -> Vec<String> {
        self.in_group(class)
            .filter(|e| e.name == "text")
            .map(|e| e.text.clone())
            .collect()
    }

    /// Elements of the group `class` whose `data-series` is `series`.
    pub fn series<'a>(&'a self, class: &'a str, series: &'a str) -> Vec<&'a Element> {
        self.elements
            .iter()
            .filter(|e| e.group == class && e.series == series)
            .collect()
    }

    /// The `data-series` names of the group `class`, first appearance order.
    pub fn series_names(&self, class: &str) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for e in self.in_group(class) {
            if !names.contains(&e.series) {
                names.push(e.series.clone());
            }
        }
        names
    }
}
