//! What the door changes in a statement before the query layer plans it, beyond
//! datafusion-postgres's rewrites: the parameter types a client declares, and the scalar
//! subqueries of catalog queries that DataFusion would refuse.
//!
//! DataFusion plans a correlated scalar subquery only when it is aggregated and not inside a
//! `CASE`. The catalog queries of SQLAlchemy and psql have both kinds. Of the subqueries that
//! read the catalog (and only those: an analyst's own query is planned as written), an
//! unaggregated one of one column becomes `max(...)` of it, which answers the same (a scalar
//! subquery answers at most one row); one inside a `CASE` becomes `NULL`, as
//! datafusion-postgres already does for the correlated subqueries of a projection: they read
//! defaults, identities, sequences and collations, which no table here has.

use imagelake_sql::datafusion::sql::sqlparser::{
    ast::{self, Expr, SetExpr, Statement},
    dialect::PostgreSqlDialect,
    parser::Parser,
};
use pgwire::api::Type;

/// Casts each `$n` whose type the client declared at Parse to that type, so the plan (and the
/// columns it describes) has it: `SELECT $1` with a date is a date column, as in PostgreSQL.
pub fn cast_declared(statement: &mut Statement, types: &[Option<Type>]) {
    use imagelake_sql::datafusion::sql::sqlparser::ast::{CastKind, Value};
    let _ = ast::visit_expressions_mut(statement, |expr| {
        if let Expr::Value(value) = expr
            && let Value::Placeholder(name) = &value.value
            && let Some(number) = name.strip_prefix('$').and_then(|n| n.parse::<usize>().ok())
            && let Some(Some(declared)) = number.checked_sub(1).and_then(|i| types.get(i))
        {
            if let Some(data_type) = sql_type(declared) {
                *expr = Expr::Cast {
                    kind: CastKind::DoubleColon,
                    expr: Box::new(expr.clone()),
                    data_type,
                    array: false,
                    format: None,
                };
            } else if *declared == Type::TIMESTAMPTZ
                && let Some(utc) = utc_timestamp(name)
            {
                *expr = utc;
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// The SQL type of a declared parameter type, for the ones a plan can take.
fn sql_type(declared: &Type) -> Option<imagelake_sql::datafusion::sql::sqlparser::ast::DataType> {
    use imagelake_sql::datafusion::sql::sqlparser::ast::{DataType as T, TimezoneInfo};
    // TIMESTAMPTZ: see `utc_timestamp`.
    Some(match *declared {
        Type::BOOL => T::Boolean,
        Type::INT2 => T::SmallInt(None),
        Type::INT4 => T::Int(None),
        Type::INT8 => T::BigInt(None),
        Type::FLOAT4 => T::Real,
        Type::FLOAT8 => T::DoublePrecision,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => T::Text,
        Type::DATE => T::Date,
        Type::TIMESTAMP => T::Timestamp(None, TimezoneInfo::None),
        Type::BYTEA => T::Bytea,
        _ => return None,
    })
}

/// `$n` as a UTC timestamp (SQL's `TIMESTAMP WITH TIME ZONE` would take the session's zone,
/// which the query layer leaves unset).
fn utc_timestamp(placeholder: &str) -> Option<Expr> {
    expression(&format!(
        "arrow_cast({placeholder}, 'Timestamp(Microsecond, Some(\"UTC\"))')"
    ))
}

/// Grafana's list of the schemas on the search path, which DataFusion cannot run (a function
/// in `FROM`, an array subscript by a column): the query's own words, then what answers the
/// same here, where the search path is `public`. (datafusion-postgres replaces it with an empty
/// list, which left Grafana's query builder without tables.)
const GRAFANA_SEARCH_PATH: (&str, &str) = (
    r#"SELECT CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
       FROM generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s"#,
    "SELECT 'public'",
);

/// `sql` with the statements DataFusion cannot run replaced, word for word, by ones that
/// answer the same here; whitespace and case of keywords do not matter.
pub fn replace_known(sql: &str) -> std::borrow::Cow<'_, str> {
    use imagelake_sql::datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let dialect = PostgreSqlDialect {};
    let words =
        |text: &str| -> Option<Vec<Token>> { Tokenizer::new(&dialect, text).tokenize().ok() };
    let significant = |tokens: &[Token]| -> Vec<(usize, String)> {
        tokens
            .iter()
            .enumerate()
            .filter(|(_, t)| !matches!(t, Token::Whitespace(_)))
            .map(|(i, t)| (i, t.to_string().to_ascii_lowercase()))
            .collect()
    };
    let (pattern, replacement) = GRAFANA_SEARCH_PATH;
    let (Some(tokens), Some(wanted)) = (words(sql), words(pattern)) else {
        return sql.into();
    };
    let wanted: Vec<String> = significant(&wanted).into_iter().map(|(_, t)| t).collect();
    let found = significant(&tokens);
    let Some(start) = found
        .windows(wanted.len())
        .position(|w| w.iter().map(|(_, t)| t).eq(wanted.iter()))
    else {
        return sql.into();
    };
    let (first, last) = (found[start].0, found[start + wanted.len() - 1].0);
    let mut text = String::new();
    for token in &tokens[..first] {
        text.push_str(&token.to_string());
    }
    text.push_str(replacement);
    for token in &tokens[last + 1..] {
        text.push_str(&token.to_string());
    }
    text.into()
}

/// An expression in PostgreSQL's dialect.
fn expression(text: &str) -> Option<Expr> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(text)
        .and_then(|mut p| p.parse_expr())
        .ok()
}

/// Functions that make a subquery's answer one row.
const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "json_agg",
    "jsonb_agg",
    "every",
];

/// Makes each scalar subquery of one column, without grouping, ordering or limit, an aggregate
/// one: `(SELECT x FROM t WHERE t.a = o.a)` becomes `(SELECT max(x) ...)`. A scalar subquery
/// answers at most one row (PostgreSQL refuses more), so the answer is the same, and DataFusion,
/// which plans correlated scalar subqueries only when aggregated, can plan it: the catalog
/// queries of SQLAlchemy and psql are full of them.
pub fn aggregate_scalar_subqueries(statement: &mut Statement) {
    let _ = ast::visit_expressions_mut(statement, |expr| {
        if let Expr::Subquery(query) = expr
            && reads_the_catalog(query)
            && query.order_by.is_none()
            && query.limit_clause.is_none()
            && query.fetch.is_none()
            && let SetExpr::Select(select) = query.body.as_mut()
            && matches!(&select.group_by, ast::GroupByExpr::Expressions(e, _) if e.is_empty())
            && select.having.is_none()
            && select.projection.len() == 1
        {
            let item = match &mut select.projection[0] {
                ast::SelectItem::UnnamedExpr(e)
                | ast::SelectItem::ExprWithAlias { expr: e, .. } => e,
                _ => return std::ops::ControlFlow::<()>::Continue(()),
            };
            if !aggregated(item)
                && let Some(wrapped) = max_of(item)
            {
                *item = wrapped;
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// Whether `expr` calls an aggregate.
fn aggregated(expr: &Expr) -> bool {
    ast::visit_expressions(expr, |e| match e {
        Expr::Function(f)
            if f.name
                .0
                .last()
                .and_then(|part| part.as_ident())
                .is_some_and(|name| {
                    AGGREGATES.contains(&name.value.to_ascii_lowercase().as_str())
                }) =>
        {
            std::ops::ControlFlow::Break(())
        }
        _ => std::ops::ControlFlow::Continue(()),
    })
    .is_break()
}

/// `max(expr)`.
fn max_of(inner: &Expr) -> Option<Expr> {
    let mut template = expression("max(NULL)")?;
    let _ = ast::visit_expressions_mut(&mut template, |e| {
        if matches!(e, Expr::Value(v) if v.value == ast::Value::Null) {
            *e = inner.clone();
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    Some(template)
}

/// The relations on the search path (`public`, then `pg_catalog`).
const VISIBLE: &str = "SELECT c.oid FROM pg_catalog.pg_class c \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE n.nspname IN ('public', 'pg_catalog')";

/// `pg_table_is_visible(oid)` in a `WHERE` as PostgreSQL answers it: whether the relation is in
/// a schema on the search path (`public`), so `live.images` does not shadow `images` in psql's
/// `\d images` or in SQLAlchemy's table list. (The catalog crate's function says true of
/// every relation.)
pub fn visible_tables_on_the_search_path(statement: &mut Statement) {
    struct Where(Option<Box<ast::Query>>);
    impl ast::VisitorMut for Where {
        type Break = ();
        fn pre_visit_query(&mut self, query: &mut ast::Query) -> std::ops::ControlFlow<()> {
            if let SetExpr::Select(select) = query.body.as_mut()
                && let Some(selection) = &mut select.selection
                && let Some(visible) = &self.0
            {
                let _ =
                    ast::visit_expressions_mut(selection, |e| {
                        if let Expr::Function(f) = e
                            && f.name.0.last().and_then(|p| p.as_ident()).is_some_and(|n| {
                                n.value.eq_ignore_ascii_case("pg_table_is_visible")
                            })
                            && let ast::FunctionArguments::List(list) = &f.args
                            && let [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(oid))] =
                                list.args.as_slice()
                        {
                            *e = Expr::InSubquery {
                                expr: Box::new(oid.clone()),
                                subquery: visible.clone(),
                                negated: false,
                            };
                        }
                        std::ops::ControlFlow::<()>::Continue(())
                    });
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let visible = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(VISIBLE)
        .and_then(|mut p| p.parse_query())
        .ok();
    let _ = ast::VisitMut::visit(statement, &mut Where(visible));
}

/// `LIKE pattern ESCAPE 'c'` with another escape than the backslash (SQLAlchemy lists schemas
/// with `ESCAPE '/'`), as the same pattern with backslash escapes, which DataFusion reads.
pub fn backslash_escapes(statement: &mut Statement) {
    let _ = ast::visit_expressions_mut(statement, |expr| {
        if let Expr::Like {
            pattern,
            escape_char,
            ..
        }
        | Expr::ILike {
            pattern,
            escape_char,
            ..
        } = expr
            && let Some(escape) = escape_char
            && let ast::Value::SingleQuotedString(e) = &escape.value
            && let [e] = e.chars().collect::<Vec<_>>().as_slice()
            && *e != '\\'
        {
            if let Expr::Value(value) = pattern.as_mut()
                && let ast::Value::SingleQuotedString(text) = &mut value.value
            {
                *text = with_backslashes(text, *e);
            } else if let Some(call) = like_escape_of(pattern, *e) {
                // A pattern computed at run time goes through `like_escape(pattern, escape)`.
                **pattern = call;
            } else {
                return std::ops::ControlFlow::Continue(());
            }
            *escape_char = None;
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// `like_escape(pattern, 'escape')`.
fn like_escape_of(pattern: &Expr, escape: char) -> Option<Expr> {
    let mut call = expression(&format!("like_escape(NULL, '{escape}')"))?;
    let mut first = true;
    let _ = ast::visit_expressions_mut(&mut call, |arg| {
        if first && matches!(arg, Expr::Value(v) if v.value == ast::Value::Null) {
            *arg = pattern.clone();
            first = false;
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    Some(call)
}

/// `pattern`, escaped with `escape`, as a pattern escaped with backslashes.
pub fn with_backslashes(pattern: &str, escape: char) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == escape {
            match chars.next() {
                Some(next @ ('%' | '_')) => {
                    out.push('\\');
                    out.push(next);
                }
                Some('\\') => out.push_str("\\\\"),
                Some(next) => out.push(next),
                None => {}
            }
        } else if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    out
}

/// Names `pg_stat_activity` in `pg_catalog` when a query names it alone (datafusion-postgres
/// does this for the catalog tables it has).
pub fn qualify_activity(statement: &mut Statement) {
    let _ = ast::visit_relations_mut(statement, |name| {
        if let [only] = name.0.as_slice()
            && only
                .as_ident()
                .is_some_and(|i| i.value.eq_ignore_ascii_case("pg_stat_activity"))
        {
            name.0.insert(
                0,
                ast::ObjectNamePart::Identifier(ast::Ident::new("pg_catalog")),
            );
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// Replaces the correlated scalar subqueries inside `CASE` expressions with `NULL`.
pub fn drop_correlated_subqueries_in_case(statement: &mut Statement) {
    let _ = ast::visit_expressions_mut(statement, |expr| {
        if matches!(expr, Expr::Case { .. }) {
            let _ = ast::visit_expressions_mut(expr, |inner| {
                if let Expr::Subquery(query) = inner
                    && reads_the_catalog(query)
                    && correlated(query)
                {
                    *inner = Expr::Value(ast::Value::Null.with_empty_span());
                }
                std::ops::ControlFlow::<()>::Continue(())
            });
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// Whether the subquery reads PostgreSQL's catalog (`pg_*` relations): these rewrites are for
/// the catalog queries of clients; an analyst's own query is planned as written, and refused
/// if DataFusion cannot plan it, rather than answered differently.
fn reads_the_catalog(query: &ast::Query) -> bool {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return false;
    };
    select
        .from
        .iter()
        .flat_map(|from| {
            std::iter::once(&from.relation).chain(from.joins.iter().map(|j| &j.relation))
        })
        .any(|factor| {
            matches!(factor, ast::TableFactor::Table { name, .. }
            if name.0.iter().filter_map(|p| p.as_ident()).any(|i| {
                let part = i.value.to_ascii_lowercase();
                part == "pg_catalog" || part.starts_with("pg_")
            }))
        })
}

/// Whether the subquery names a column of a table outside its own `FROM`.
fn correlated(query: &ast::Query) -> bool {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return false;
    };
    let mut own = Vec::new();
    for from in &select.from {
        for factor in std::iter::once(&from.relation).chain(from.joins.iter().map(|j| &j.relation))
        {
            if let ast::TableFactor::Table { name, alias, .. } = factor {
                if let Some(last) = name.0.last().and_then(|p| p.as_ident()) {
                    own.push(last.value.to_ascii_lowercase());
                }
                if let Some(alias) = alias {
                    own.push(alias.name.value.to_ascii_lowercase());
                }
            }
        }
    }
    ast::visit_expressions(query, |e| match e {
        Expr::CompoundIdentifier(parts)
            if parts.len() >= 2
                && !own.contains(&parts[parts.len() - 2].value.to_ascii_lowercase()) =>
        {
            std::ops::ControlFlow::Break(())
        }
        _ => std::ops::ControlFlow::Continue(()),
    })
    .is_break()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str, declared: &[Option<Type>]) -> String {
        let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        let statement = &mut statements[0];
        cast_declared(statement, declared);
        backslash_escapes(statement);
        qualify_activity(statement);
        visible_tables_on_the_search_path(statement);
        drop_correlated_subqueries_in_case(statement);
        aggregate_scalar_subqueries(statement);
        statement.to_string()
    }

    #[test]
    fn correlated_subqueries_in_case_become_null() {
        assert_eq!(
            rewritten(
                "SELECT CASE WHEN a.x THEN (SELECT d.y FROM pg_catalog.d WHERE d.k = a.k) ELSE NULL END FROM a",
                &[]
            ),
            "SELECT CASE WHEN a.x THEN NULL ELSE NULL END FROM a"
        );
        for kept in [
            "SELECT CASE WHEN a.x THEN (SELECT max(d.y) FROM pg_d d) END FROM a",
            "SELECT CASE WHEN a.x THEN (SELECT max(d.y) FROM events d WHERE d.k = a.k) END FROM a",
        ] {
            assert_eq!(
                rewritten(kept, &[]),
                kept,
                "an analyst's query is left as written"
            );
        }
    }

    #[test]
    fn grafana_search_path_is_public() {
        let grafana = r#"select quote_ident(table_name) as "table" from information_schema.tables
    where table_type = 'BASE TABLE' and quote_ident(table_schema) IN (SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
        FROM
            generate_series(
                array_lower(string_to_array(current_setting('search_path'),','),1),
                array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )"#;
        let replaced = replace_known(grafana);
        assert!(
            replaced.ends_with("IN (SELECT 'public'\n          )"),
            "{replaced}"
        );
        assert!(replaced.starts_with("select quote_ident(table_name) as \"table\""));
        assert_eq!(replace_known("SELECT 1"), "SELECT 1");
    }

    #[test]
    fn like_escapes_become_backslashes() {
        assert_eq!(
            rewritten("SELECT 1 WHERE n NOT LIKE 'pg/_%' ESCAPE '/'", &[]),
            r"SELECT 1 WHERE n NOT LIKE 'pg\_%'"
        );
        assert_eq!(with_backslashes(r"a//b\c/%", '/'), r"a/b\\c\%");
        assert_eq!(
            rewritten("SELECT 1 WHERE n NOT LIKE $1 || '%' ESCAPE '/'", &[]),
            "SELECT 1 WHERE n NOT LIKE like_escape($1 || '%', '/')"
        );
    }

    #[test]
    fn activity_is_in_the_catalog() {
        assert_eq!(
            rewritten("SELECT count(*) FROM pg_stat_activity", &[]),
            "SELECT count(*) FROM pg_catalog.pg_stat_activity"
        );
    }

    #[test]
    fn visibility_means_the_search_path() {
        let sql = rewritten(
            "SELECT c.relname FROM pg_catalog.pg_class c WHERE pg_catalog.pg_table_is_visible(c.oid) AND c.relkind = 'r'",
            &[],
        );
        assert!(
            sql.contains("c.oid IN (SELECT c.oid FROM pg_catalog.pg_class"),
            "{sql}"
        );
        assert!(sql.contains("IN ('public', 'pg_catalog')"), "{sql}");
    }

    #[test]
    fn declared_parameters_are_cast() {
        assert_eq!(
            rewritten(
                "SELECT $1, $2, $3",
                &[Some(Type::DATE), None, Some(Type::INT8)]
            ),
            "SELECT $1::DATE, $2, $3::BIGINT"
        );
        assert!(
            rewritten("SELECT $1", &[Some(Type::TIMESTAMPTZ)]).contains("arrow_cast($1, "),
            "a UTC timestamp"
        );
    }

    #[test]
    fn scalar_subqueries_become_aggregates_where_that_changes_nothing() {
        assert_eq!(
            rewritten(
                "SELECT (SELECT d.x AS y FROM pg_catalog.pg_d d WHERE d.a = o.a) FROM o",
                &[]
            ),
            "SELECT (SELECT max(d.x) AS y FROM pg_catalog.pg_d d WHERE d.a = o.a) FROM o"
        );
        for kept in [
            "SELECT (SELECT count(*) FROM pg_d d WHERE d.a = o.a) FROM o",
            "SELECT (SELECT d.x FROM pg_d d ORDER BY d.x LIMIT 1) FROM o",
            "SELECT (SELECT d.x, d.y FROM pg_d d) FROM o",
            "SELECT (SELECT d.x FROM events d WHERE d.a = o.a) FROM o",
        ] {
            assert_eq!(rewritten(kept, &[]), kept, "kept as written");
        }
    }
}
