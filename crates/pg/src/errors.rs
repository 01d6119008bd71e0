//! The query layer's refusals as PostgreSQL errors, with the SQLSTATE a client or a BI tool
//! acts on: `57014` for the timeout, `42501` for a refused statement, `53200` for the memory
//! cap, `53400` for the concurrency caps, `42601`/`42P01`/`42703` for the SQL's own faults.

use imagelake_core::ErrorCode;
use imagelake_sql::QueryError;
use pgwire::error::{ErrorInfo, PgWireError};

/// The SQLSTATE of a refusal.
pub fn sqlstate(error: &QueryError) -> &'static str {
    match error.code {
        ErrorCode::QueryTimeout => "57014",
        ErrorCode::ForbiddenStatement | ErrorCode::Forbidden => "42501",
        ErrorCode::QueryTooLarge => "53200",
        ErrorCode::RateLimited => "53400",
        ErrorCode::InvalidSql => invalid_sql(&error.message),
        _ => "XX000",
    }
}

/// The finer class of an `invalid_sql`, read from the engine's message.
fn invalid_sql(message: &str) -> &'static str {
    let text = message.to_ascii_lowercase();
    if text.contains("table") && (text.contains("not found") || text.contains("doesn't exist")) {
        "42P01"
    } else if text.contains("no field named")
        || text.contains("column") && text.contains("not found")
    {
        "42703"
    } else if text.contains("divide by zero") {
        "22012"
    } else if text.contains("cast error") || text.contains("cannot cast") {
        "22P02"
    } else {
        "42601"
    }
}

/// The refusal as an `ERROR` the client shows, with the position in the SQL when known.
pub fn from_query(error: &QueryError, sql: &str) -> PgWireError {
    let mut info = ErrorInfo::new(
        "ERROR".to_owned(),
        sqlstate(error).to_owned(),
        error.message.clone(),
    );
    info.position = error
        .position
        .and_then(|p| character_position(sql, p.line, p.column))
        .map(|at| at.to_string());
    PgWireError::UserError(Box::new(info))
}

/// An `ERROR` with this SQLSTATE and message.
pub fn error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        message.into(),
    )))
}

/// A 1-based line and column as PostgreSQL's 1-based character offset into the query.
fn character_position(sql: &str, line: u64, column: u64) -> Option<usize> {
    let line = usize::try_from(line).ok()?.checked_sub(1)?;
    let column = usize::try_from(column).ok()?;
    let before: usize = sql
        .split('\n')
        .take(line)
        .map(|l| l.chars().count() + 1)
        .sum();
    Some(before + column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_carry_postgres_codes() {
        let code = |code, message: &str| sqlstate(&QueryError::new(code, message));
        assert_eq!(code(ErrorCode::QueryTimeout, "late"), "57014");
        assert_eq!(code(ErrorCode::ForbiddenStatement, "DROP"), "42501");
        assert_eq!(code(ErrorCode::QueryTooLarge, "memory"), "53200");
        assert_eq!(
            code(ErrorCode::InvalidSql, "table 'nope' not found"),
            "42P01"
        );
        assert_eq!(code(ErrorCode::InvalidSql, "No field named nope."), "42703");
        assert_eq!(
            code(ErrorCode::InvalidSql, "Expected: an expression"),
            "42601"
        );
    }

    #[test]
    fn positions_count_characters_from_one() {
        assert_eq!(character_position("SELECT x", 1, 8), Some(8));
        assert_eq!(character_position("SELECT\n  é, x", 2, 6), Some(13));
        assert_eq!(character_position("SELECT", 0, 1), None);
    }
}
