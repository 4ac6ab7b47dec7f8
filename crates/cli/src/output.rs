//! What commands print: aligned tables and `key: value` records for people, the API's JSON
//! (or YAML) for scripts (`--output json|yaml`). A list prints its items as an array.
//!
//! Colour only when stdout is a terminal, `NO_COLOR` is unset (any value turns it off,
//! <https://no-color.org>) and `TERM` is not `dumb`. Results go to stdout; notes, progress
//! and errors to stderr, so `attune ... -o json | jq` always reads clean JSON.

use std::io::IsTerminal;

use chrono::{DateTime, Utc};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    // (No doc comments: clap then lists the values on one line.)
    #[default]
    Table,
    Json,
    Yaml,
}

/// A column of a table: its header and how a row's cell is read.
pub struct Column {
    pub header: &'static str,
    pub cell: fn(&Value) -> String,
}

pub const fn col(header: &'static str, cell: fn(&Value) -> String) -> Column {
    Column { header, cell }
}

#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub format: Format,
    pub color: bool,
}

impl Out {
    pub fn new(format: Format) -> Out {
        Out { format, color: color_allowed(std::io::stdout().is_terminal()) }
    }

    pub fn machine(&self) -> bool {
        self.format != Format::Table
    }

    /// Prints a value as JSON or YAML (a table-format caller prints it its own way).
    pub fn data(&self, value: &Value) {
        match self.format {
            Format::Yaml => print!("{}", serde_yaml::to_string(value).unwrap_or_default()),
            _ => println!("{}", serde_json::to_string_pretty(value).unwrap_or_default()),
        }
    }

    /// A list: a table, or the items as a JSON/YAML array. `total` beyond the rows shown
    /// adds a note on stderr.
    pub fn list(&self, items: &[Value], columns: &[Column], total: Option<i64>) {
        if self.machine() {
            self.data(&Value::Array(items.to_vec()));
            return;
        }
        if items.is_empty() {
            eprintln!("(none)");
            return;
        }
        let rows: Vec<Vec<String>> =
            items.iter().map(|item| columns.iter().map(|c| (c.cell)(item)).collect()).collect();
        let headers: Vec<&str> = columns.iter().map(|c| c.header).collect();
        print!("{}", self.render_table(&headers, &rows));
        if let Some(total) = total.filter(|t| *t > items.len() as i64) {
            eprintln!("({} of {total} shown: use --limit and --offset for more)", items.len());
        }
    }

    /// A record: `key: value` lines (aligned), or the whole value as JSON/YAML.
    pub fn record(&self, value: &Value, fields: &[(&str, String)]) {
        if self.machine() {
            self.data(value);
            return;
        }
        print!("{}", self.render_record(fields));
    }

    pub fn render_record(&self, fields: &[(&str, String)]) -> String {
        let width = fields.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
        let mut out = String::new();
        for (key, value) in fields {
            let pad = " ".repeat(width - key.chars().count());
            let label = self.paint(Paint::Dim, &format!("{key}:"));
            let mut lines = value.lines();
            out.push_str(&format!("{label}{pad} {}\n", self.styled_value(key, lines.next().unwrap_or(""))));
            for line in lines {
                out.push_str(&format!("{} {line}\n", " ".repeat(width + 1)));
            }
        }
        out
    }

    /// An aligned table: two spaces between columns, the last one not padded.
    pub fn render_table(&self, headers: &[&str], rows: &[Vec<String>]) -> String {
        let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
        for row in rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let line = |cells: Vec<String>, raw: &[String]| {
            let last = cells.len().saturating_sub(1);
            let mut s = String::new();
            for (i, (cell, plain)) in cells.iter().zip(raw).enumerate() {
                s.push_str(cell);
                if i < last {
                    s.push_str(&" ".repeat(widths[i] - plain.chars().count() + 2));
                }
            }
            s.trim_end().to_string() + "\n"
        };
        let heads: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
        let mut out = line(heads.iter().map(|h| self.paint(Paint::Bold, h)).collect(), &heads);
        for row in rows {
            let cells = row.iter().zip(headers).map(|(cell, h)| self.styled_value(h, cell)).collect();
            out.push_str(&line(cells, row));
        }
        out
    }

    /// Statuses in colour (a column or field named status/state).
    fn styled_value(&self, key: &str, value: &str) -> String {
        if key.eq_ignore_ascii_case("status") || key.eq_ignore_ascii_case("state") {
            return self.paint(status_paint(value), value);
        }
        value.to_string()
    }

    pub fn paint(&self, paint: Paint, text: &str) -> String {
        if !self.color || text.is_empty() {
            return text.to_string();
        }
        let code = match paint {
            Paint::Plain => return text.to_string(),
            Paint::Bold => "1",
            Paint::Dim => "2",
            Paint::Green => "32",
            Paint::Red => "31",
            Paint::Yellow => "33",
            Paint::Cyan => "36",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Paint {
    Plain,
    Bold,
    Dim,
    Green,
    Red,
    Yellow,
    Cyan,
}

pub fn status_paint(status: &str) -> Paint {
    match status {
        "succeeded" | "responded" | "processed" | "enabled" | "true" => Paint::Green,
        "failed" | "canceled" | "expired" | "timeout" | "disabled" => Paint::Red,
        "succeeded_with_errors" | "paused" | "pending" | "canceling" => Paint::Yellow,
        "running" | "scheduled" | "requested" => Paint::Cyan,
        _ => Paint::Plain,
    }
}

/// Whether colour may be used on a stream that is (or is not) a terminal.
pub fn color_allowed(is_terminal: bool) -> bool {
    is_terminal && std::env::var_os("NO_COLOR").is_none() && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

// ---- cell helpers ---------------------------------------------------------------------

/// A field as text: strings bare, null as empty, the rest as compact JSON.
pub fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A field cut to one line of at most `max` characters.
pub fn short(value: &Value, max: usize) -> String {
    let t = text(value).replace('\n', " ");
    match t.char_indices().nth(max.saturating_sub(1)) {
        Some((cut, _)) if t.chars().count() > max => format!("{}…", &t[..cut]),
        _ => t,
    }
}

pub fn yes_no(value: &Value) -> String {
    match value.as_bool() {
        Some(true) => "yes".into(),
        Some(false) => "no".into(),
        None => String::new(),
    }
}

pub fn parse_time(value: &Value) -> Option<DateTime<Utc>> {
    value.as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|t| t.with_timezone(&Utc))
}

/// A timestamp as `2026-01-27 10:30:00` (UTC).
pub fn time(value: &Value) -> String {
    parse_time(value).map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default()
}

/// `1.2s`, `3m04s`, `2h05m`.
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!("{}h{:02}m", (s / 3600.0) as u64, ((s % 3600.0) / 60.0) as u64)
    }
}

/// An execution's run time: finished − started, or up to now while it runs.
pub fn elapsed(execution: &Value) -> String {
    let start = parse_time(&execution["started_at"]).or_else(|| parse_time(&execution["created_at"]));
    let end = parse_time(&execution["finished_at"]);
    match (start, end) {
        (Some(s), Some(e)) => duration((e - s).num_milliseconds() as f64 / 1000.0),
        (Some(s), None) => duration((Utc::now() - s).num_milliseconds() as f64 / 1000.0),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_and_end_without_padding() {
        let out = Out { format: Format::Table, color: false };
        let table = out.render_table(
            &["ID", "STATUS", "ACTION"],
            &[vec!["7".into(), "succeeded".into(), "core.echo".into()], vec!["12".into(), "failed".into(), "x".into()]],
        );
        assert_eq!(table, "ID  STATUS     ACTION\n7   succeeded  core.echo\n12  failed     x\n");
    }

    #[test]
    fn colour_does_not_break_alignment() {
        let out = Out { format: Format::Table, color: true };
        let table = out.render_table(&["STATUS", "X"], &[vec!["ok".into(), "1".into()]]);
        let plain: String = strip_ansi(&table);
        assert_eq!(plain, "STATUS  X\nok      1\n");
    }

    fn strip_ansi(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn cells() {
        assert_eq!(text(&json!(null)), "");
        assert_eq!(text(&json!({"a": 1})), "{\"a\":1}");
        assert_eq!(short(&json!("abcdefgh"), 5), "abcd…");
        assert_eq!(duration(1.24), "1.2s");
        assert_eq!(duration(184.0), "3m04s");
        assert_eq!(duration(7500.0), "2h05m");
        assert_eq!(
            elapsed(&json!({"started_at": "2026-01-27T10:30:00Z", "finished_at": "2026-01-27T10:30:02.5Z"})),
            "2.5s"
        );
    }
}
