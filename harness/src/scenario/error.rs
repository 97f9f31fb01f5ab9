//! Errors from reading, parsing and validating a scenario file. Every message
//! names where the problem is (a JSON field path such as
//! `journeys[1].steps[0].retry.on[2]`, or a line and column for broken JSON),
//! what is wrong, and what was expected. Not for errors while running one.

use std::fmt;
use std::path::PathBuf;

/// One problem at one place in the scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// JSON field path, e.g. `journeys[1].steps[0].retry.on[2]`; empty for the whole document.
    pub path: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "(top level): {}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The text is not JSON at all. `excerpt` is the offending line with a
    /// caret under the column (empty when there is no such line).
    #[error("{}line {line} column {column}: invalid JSON: {message}{excerpt}", file_prefix(file))]
    Syntax { file: Option<PathBuf>, line: usize, column: usize, message: String, excerpt: String },
    /// The JSON does not have the shape of a scenario (a wrong type, an unknown
    /// or missing field), found while deserializing; `line`/`column` locate it.
    #[error("{}{error} (line {line} column {column})", file_prefix(file))]
    Shape { file: Option<PathBuf>, error: FieldError, line: usize, column: usize },
    /// Well-formed but wrong: one entry per problem found.
    #[error("{}{}", file_prefix(file), list(errors))]
    Invalid { file: Option<PathBuf>, errors: Vec<FieldError> },
}

impl ScenarioError {
    /// The field errors this error carries (empty for unreadable files and JSON syntax errors).
    pub fn field_errors(&self) -> Vec<&FieldError> {
        match self {
            ScenarioError::Shape { error, .. } => vec![error],
            ScenarioError::Invalid { errors, .. } => errors.iter().collect(),
            _ => Vec::new(),
        }
    }

    /// The field paths named by this error, in order.
    pub fn paths(&self) -> Vec<&str> {
        self.field_errors().into_iter().map(|e| e.path.as_str()).collect()
    }

    pub(crate) fn with_file(mut self, path: PathBuf) -> Self {
        match &mut self {
            ScenarioError::Syntax { file, .. }
            | ScenarioError::Shape { file, .. }
            | ScenarioError::Invalid { file, .. } => *file = Some(path),
            ScenarioError::Read { .. } => {}
        }
        self
    }
}

/// "\n  3 | the line\n    |     ^" for a 1-based line and column, or "".
pub(crate) fn excerpt(text: &str, line: usize, column: usize) -> String {
    let Some(src) = line.checked_sub(1).and_then(|i| text.lines().nth(i)) else { return String::new() };
    // Long lines (minified JSON) are cut around the column.
    let chars: Vec<char> = src.chars().collect();
    let start = column.saturating_sub(60);
    let end = (start + 100).min(chars.len());
    let shown: String = chars.get(start..end).map(|c| c.iter().collect()).unwrap_or_default();
    let gutter = line.to_string();
    let caret_at = column.saturating_sub(1).saturating_sub(start);
    format!("\n  {gutter} | {shown}\n  {} | {}^", " ".repeat(gutter.len()), " ".repeat(caret_at))
}

fn file_prefix(file: &Option<PathBuf>) -> String {
    match file {
        Some(p) => format!("{}: ", p.display()),
        None => String::new(),
    }
}

fn list(errors: &[FieldError]) -> String {
    match errors {
        [one] => one.to_string(),
        many => {
            let mut s = format!("{} problems:", many.len());
            for e in many {
                s.push_str("\n  ");
                s.push_str(&e.to_string());
            }
            s
        }
    }
}
