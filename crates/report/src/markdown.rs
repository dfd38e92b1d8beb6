//! `report.md`: the sections as GitHub-flavoured Markdown; charts are linked as the PNG files
//! next to it (SVG alongside).

use std::path::Path;

use crate::answers;
use crate::report::{Section, TableView};

/// Escapes a table cell: `|` as `\|`, a newline as a space.
pub fn escape(cell: &str) -> String {
    cell.replace('|', "\\|").replace('\n', " ")
}

/// A Markdown table.
pub fn table(t: &TableView) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "| {} |\n",
        t.headers
            .iter()
            .map(|h| escape(h))
            .collect::<Vec<_>>()
            .join(" | ")
    ));
    out.push_str(&format!("|{}\n", "---|".repeat(t.headers.len())));
    for row in &t.rows {
        out.push_str(&format!(
            "| {} |\n",
            row.iter()
                .map(|c| escape(c))
                .collect::<Vec<_>>()
                .join(" | ")
        ));
    }
    out
}

/// Renders the whole document; chart paths are written relative to `dir`.
pub fn render(title: &str, sections: &[Section], dir: &Path) -> String {
    let mut out = format!("# {title}\n\n");
    for s in sections {
        out.push_str(&format!("## {}\n\n", s.title));
        if !s.text.trim().is_empty() {
            out.push_str(s.text.trim());
            out.push_str("\n\n");
        }
        if let Some(t) = &s.table {
            if t.rows.is_empty() {
                out.push_str("_not measured_\n\n");
            } else {
                out.push_str(&table(t));
                out.push('\n');
            }
        }
        if let Some(a) = &s.answers {
            out.push_str(&answers::to_markdown(a));
        }
        for c in &s.charts {
            let rel = |p: &Path| {
                p.strip_prefix(dir)
                    .unwrap_or(p)
                    .to_string_lossy()
                    .into_owned()
            };
            out.push_str(&format!(
                "![{}]({}) ([SVG]({}))\n\n",
                c.title,
                rel(&c.png),
                rel(&c.svg)
            ));
        }
        if let Some(code) = &s.code {
            out.push_str(&format!("```toml\n{}\n```\n\n", code.trim_end()));
        }
    }
    out
}
