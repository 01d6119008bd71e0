//! Only queries pass: the SQL text is parsed once here, and anything but a read (a `SELECT`,
//! `WITH`, `VALUES`, `SHOW TABLES`, `SHOW COLUMNS`, `DESCRIBE`, `EXPLAIN` of those) is refused
//! as `forbidden_statement` before it is planned. The plan is checked again for DDL, DML and
//! statements ([`read_only`]), so a write that hides inside a query (`SELECT ... INTO`) is
//! refused too; so is a write in a `WITH` (found by walking the whole statement).
//!
//! Expressions may nest [`MAX_EXPRESSION_DEPTH`] deep. Planning a chain such as `1 + 1 + ...`
//! costs the square of its length, in one step that no timeout can interrupt: 30 000 terms,
//! well within a request's size, would hold a core for good.

use std::ops::ControlFlow;

use datafusion::{
    execution::context::SQLOptions,
    sql::{
        parser::{DFParser, Statement},
        sqlparser::{
            ast::{self, Visit, Visitor},
            dialect::GenericDialect,
        },
    },
};

use super::error::QueryError;

/// The one statement of `sql`, if it is a read.
pub fn statement(sql: &str) -> Result<Statement, QueryError> {
    let mut statements = DFParser::parse_sql_with_dialect(sql, &GenericDialect {})
        .map_err(|e| QueryError::from_engine(&e))?;
    let statement = match statements.len() {
        0 => return Err(QueryError::invalid("no SQL statement given")),
        1 => statements.pop_front().unwrap_or_else(|| unreachable!()),
        n => {
            return Err(QueryError::invalid(format!(
                "{n} statements given; send one per request"
            )));
        }
    };
    parsed(statement)
}

/// `statement`, parsed by a door, if it is a read.
pub fn parsed(statement: Statement) -> Result<Statement, QueryError> {
    check(&statement)?;
    walk(&statement)?;
    Ok(statement)
}

/// How deep expressions may nest, each operator of a chain one level (DuckDB's
/// `max_expression_depth` has the same default). A 1000-term chain plans in about a second.
pub const MAX_EXPRESSION_DEPTH: usize = 1000;

/// Walks the whole statement: writes in any query of it, and the depth of its expressions.
struct Walk {
    depth: usize,
}

impl Visitor for Walk {
    type Break = QueryError;

    fn pre_visit_query(&mut self, query: &ast::Query) -> ControlFlow<QueryError> {
        match query.body.as_ref() {
            ast::SetExpr::Insert(_)
            | ast::SetExpr::Update(_)
            | ast::SetExpr::Delete(_)
            | ast::SetExpr::Merge(_) => ControlFlow::Break(refused("a write inside WITH")),
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_expr(&mut self, _: &ast::Expr) -> ControlFlow<QueryError> {
        self.depth += 1;
        if self.depth > MAX_EXPRESSION_DEPTH {
            return ControlFlow::Break(QueryError::invalid(format!(
                "expressions nest more than {MAX_EXPRESSION_DEPTH} deep (each operator of a chain \
                 such as a + b + c is one level): split the query, or use IN (...) for lists"
            )));
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _: &ast::Expr) -> ControlFlow<QueryError> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
}

fn walk(statement: &Statement) -> Result<(), QueryError> {
    let flow = match statement {
        Statement::Statement(s) => s.visit(&mut Walk { depth: 0 }),
        Statement::Explain(explain) => return walk(&explain.statement),
        _ => ControlFlow::Continue(()),
    };
    match flow {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// Whether it is an `EXPLAIN` (whose plans and metrics count the rows of whole files, so
/// customers' keys may not run it).
pub fn is_explain(statement: &Statement) -> bool {
    matches!(statement, Statement::Explain(_))
        || matches!(statement, Statement::Statement(s) if matches!(s.as_ref(), ast::Statement::Explain { .. }))
}

fn check(statement: &Statement) -> Result<(), QueryError> {
    match statement {
        Statement::Statement(s) => check_sql(s),
        Statement::Explain(explain) => check(&explain.statement),
        Statement::CreateExternalTable(_) => Err(refused("CREATE EXTERNAL TABLE")),
        Statement::CopyTo(_) => Err(refused("COPY")),
        Statement::Reset(_) => Err(refused("RESET")),
    }
}

fn check_sql(statement: &ast::Statement) -> Result<(), QueryError> {
    use ast::Statement as S;
    match statement {
        S::Query(_) => Ok(()),
        S::ShowTables { .. } | S::ShowColumns { .. } | S::ExplainTable { .. } => Ok(()),
        S::Explain { statement, .. } => check_sql(statement),
        other => Err(refused(&kind(other))),
    }
}

/// The statement's leading words, to name what was refused.
fn kind(statement: &ast::Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    match words.as_slice() {
        [first, second]
            if ["CREATE", "DROP", "ALTER", "SHOW", "SET"]
                .contains(&first.to_uppercase().as_str()) =>
        {
            format!("{} {}", first.to_uppercase(), second.to_uppercase())
        }
        [first, ..] => first.to_uppercase(),
        [] => "this statement".to_owned(),
    }
}

fn refused(what: &str) -> QueryError {
    QueryError::forbidden(format!(
        "{what} is not allowed: SQL here is read-only (SELECT, WITH, VALUES, SHOW TABLES, SHOW COLUMNS, DESCRIBE, and EXPLAIN except with customer keys)"
    ))
}

/// The checks of the plan: no DDL, no DML, no statements (`SET`, transactions).
pub fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

#[cfg(test)]
mod tests {
    use imagelake_core::ErrorCode;

    use super::*;

    #[test]
    fn reads_pass() {
        for sql in [
            "SELECT 1",
            "WITH a AS (SELECT 1 AS x) SELECT x FROM a",
            "VALUES (1), (2)",
            "SHOW TABLES",
            "SHOW COLUMNS FROM events",
            "DESCRIBE events",
            "EXPLAIN SELECT * FROM events",
            "EXPLAIN ANALYZE SELECT 1",
            "select 1;",
        ] {
            statement(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }

    #[test]
    fn everything_else_is_refused() {
        for sql in [
            "CREATE TABLE t (a INT)",
            "CREATE TABLE t AS SELECT 1",
            "CREATE VIEW v AS SELECT 1",
            "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '/etc/'",
            "DROP TABLE events",
            "INSERT INTO events VALUES (1)",
            "UPDATE events SET type = 'x'",
            "DELETE FROM events",
            "COPY events TO '/tmp/x.parquet'",
            "COPY (SELECT 1) TO '/tmp/x.csv'",
            "SET datafusion.execution.target_partitions = 1",
            "RESET datafusion.execution.batch_size",
            "BEGIN",
            "EXPLAIN CREATE TABLE t (a INT)",
            "EXPLAIN DELETE FROM events",
            "TRUNCATE TABLE events",
            "ALTER TABLE events ADD COLUMN x INT",
            "CREATE FUNCTION f() RETURNS INT RETURN 1",
            "PREPARE p AS SELECT 1",
            "WITH a AS (SELECT 1) INSERT INTO events SELECT * FROM a",
            "WITH x AS (INSERT INTO customers VALUES ('x')) SELECT 1",
            "WITH x AS (DELETE FROM events RETURNING *) SELECT * FROM x",
            "SELECT * FROM (WITH y AS (UPDATE events SET type = 'x' RETURNING *) SELECT * FROM y) z",
        ] {
            let e = statement(sql).expect_err(sql);
            assert_eq!(e.code, ErrorCode::ForbiddenStatement, "{sql}: {e}");
        }
    }

    #[test]
    fn expressions_nest_within_the_depth() {
        let chain = |n: usize| format!("SELECT 1{}", " + 1".repeat(n));
        statement(&chain(MAX_EXPRESSION_DEPTH - 1)).expect("within the depth");
        let e = statement(&chain(MAX_EXPRESSION_DEPTH)).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidSql, "{e}");
        assert!(e.message.contains("nest more than 1000 deep"), "{e}");
        let ands = format!("SELECT 1 WHERE 1 = 1{}", " AND 1 = 1".repeat(1000));
        assert!(statement(&ands).is_err(), "a chain of ANDs counts too");
        let e = statement(&format!("EXPLAIN {}", chain(5000))).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidSql, "{e}");
    }

    #[test]
    fn bad_or_many_statements_are_invalid() {
        for sql in ["", "SELEC 1", "SELECT 1; SELECT 2", "SELECT * FORM events"] {
            let e = statement(sql).expect_err(sql);
            assert_eq!(e.code, ErrorCode::InvalidSql, "{sql}: {e}");
        }
        let e = statement("SELECT * FORM events").unwrap_err();
        assert!(e.position.is_some(), "{e}");
    }
}
