//! What a query answers when it does not answer rows: one of the SQL error codes of the API,
//! with a message fit to show the caller (never another customer's data: the engine only ever
//! sees the caller's rows), and the position in the SQL text when the engine gives one.

use datafusion::error::DataFusionError;
use imagelake_core::ErrorCode;
use serde::Serialize;

/// Where in the SQL text an error is, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Position {
    pub line: u64,
    pub column: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub code: ErrorCode,
    pub message: String,
    pub position: Option<Position>,
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if let Some(p) = self.position {
            write!(f, " (line {}, column {})", p.line, p.column)?;
        }
        Ok(())
    }
}

impl std::error::Error for QueryError {}

impl QueryError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            position: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidSql, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ForbiddenStatement, message)
    }

    /// An internal failure: logged whole, shown as a bare `internal`.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "query failed inside the engine");
        Self::new(ErrorCode::Internal, "internal error; it was logged")
    }

    /// The engine's error as the caller's: the memory cap, the SQL's own faults (with the
    /// position), or an internal failure.
    pub fn from_engine(e: &DataFusionError) -> Self {
        let position = position(e);
        let root = e.find_root();
        let mut error = match root {
            // A function refused before it ran says why itself (`functions::Bounded`).
            DataFusionError::ResourcesExhausted(why) if why.contains("() would make") => {
                Self::new(ErrorCode::QueryTooLarge, why.clone())
            }
            DataFusionError::ResourcesExhausted(_) => Self::new(
                ErrorCode::QueryTooLarge,
                "the query needs more memory than the SQL memory cap (sql.max_memory_bytes); filter on dt and hour, select fewer columns, or aggregate",
            ),
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_)
            | DataFusionError::Execution(_)
            | DataFusionError::ArrowError(..) => Self::invalid(clean(&root.to_string())),
            _ => Self::internal(e),
        };
        error.position = position;
        error
    }
}

/// The engine's message without its internal prefixes and backtraces.
fn clean(message: &str) -> String {
    let mut text = message;
    for prefix in [
        "SQL error: ",
        "Error during planning: ",
        "Schema error: ",
        "This feature is not implemented: ",
        "Execution error: ",
        "Arrow error: ",
        "ParserError(\"",
    ] {
        text = text.strip_prefix(prefix).unwrap_or(text);
    }
    let text = text.strip_suffix("\")").unwrap_or(text);
    // The position is given apart.
    let text = text.rfind(" at Line: ").map_or(text, |at| &text[..at]);
    text.split("\n\nbacktrace")
        .next()
        .unwrap_or(text)
        .trim()
        .to_owned()
}

/// The position the engine gives: a span of its diagnostics, or sqlparser's
/// "at Line: L, Column: C".
fn position(e: &DataFusionError) -> Option<Position> {
    if let Some(span) = e.diagnostic().and_then(|d| d.span) {
        return Some(Position {
            line: span.start.line,
            column: span.start.column,
        });
    }
    let text = e.to_string();
    let at = text.rfind("Line: ")?;
    let rest = &text[at + "Line: ".len()..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let column: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some(Position {
        line: line.trim().parse().ok()?,
        column: column.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_positions_are_read_from_the_message() {
        let e = DataFusionError::SQL(
            Box::new(
                datafusion::sql::sqlparser::parser::ParserError::ParserError(
                    "Expected: end of statement, found: FORM at Line: 2, Column: 10".into(),
                ),
            ),
            None,
        );
        let error = QueryError::from_engine(&e);
        assert_eq!(error.code, ErrorCode::InvalidSql);
        assert_eq!(
            error.position,
            Some(Position {
                line: 2,
                column: 10
            })
        );
        assert!(error.message.contains("found: FORM"), "{}", error.message);
        assert!(!error.message.contains("Line:"), "{}", error.message);
    }

    #[test]
    fn the_memory_cap_is_query_too_large() {
        let e = DataFusionError::Context(
            "collecting".into(),
            Box::new(DataFusionError::ResourcesExhausted("pool".into())),
        );
        assert_eq!(QueryError::from_engine(&e).code, ErrorCode::QueryTooLarge);
    }
}
