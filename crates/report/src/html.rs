//! `report.html`: one self-contained page. Charts are embedded as `data:image/png;base64,...`
//! URIs, styles are inline, nothing is fetched.

use base64::Engine;

use crate::answers;
use crate::error::{io, Result};
use crate::report::{Section, TableView};

/// Escapes text for HTML.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn table(t: &TableView) -> String {
    let mut out = String::from("<table>\n<thead><tr>");
    for h in &t.headers {
        out.push_str(&format!("<th>{}</th>", escape(h)));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in &t.rows {
        out.push_str("<tr>");
        for c in row {
            let class = if c == "not measured" {
                " class=\"nm\""
            } else {
                ""
            };
            out.push_str(&format!("<td{class}>{}</td>", escape(c)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

const STYLE: &str =
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}\
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}\
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f0f0f0}\
td.nm{color:#999;font-style:italic}img.chart{max-width:100%;border:1px solid #ddd;margin:0.5em 0}\
pre{background:#f6f6f6;padding:1em;overflow-x:auto}\
details.answers{margin:0.3em 0}details.answers summary{cursor:pointer}\
details.answers td.text{white-space:pre-wrap;max-width:60em}";

/// Renders the page; reads each chart's PNG to embed it.
pub fn render(title: &str, sections: &[Section]) -> Result<String> {
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        escape(title),
        escape(title)
    );
    for s in sections {
        out.push_str(&format!("<h2>{}</h2>\n", escape(&s.title)));
        if !s.text.trim().is_empty() {
            out.push_str(&format!("<p>{}</p>\n", escape(s.text.trim())));
        }
        if let Some(t) = &s.table {
            if t.rows.is_empty() {
                out.push_str("<p class=\"nm\"><em>not measured</em></p>\n");
            } else {
                out.push_str(&table(t));
            }
        }
        if let Some(a) = &s.answers {
            out.push_str(&answers::to_html(a));
        }
        for c in &s.charts {
            let bytes = std::fs::read(&c.png).map_err(io(&c.png))?;
            let data = base64::engine::general_purpose::STANDARD.encode(bytes);
            out.push_str(&format!(
                "<figure><img class=\"chart\" alt=\"{}\" src=\"data:image/png;base64,{data}\"><figcaption>{}</figcaption></figure>\n",
                escape(&c.title),
                escape(&c.title)
            ));
        }
        if let Some(code) = &s.code {
            out.push_str(&format!("<pre>{}</pre>\n", escape(code.trim_end())));
        }
    }
    out.push_str("</body>\n</html>\n");
    Ok(out)
}
