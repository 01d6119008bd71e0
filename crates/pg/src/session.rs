//! A connection's statements, in the simple protocol (psql) and the extended one (JDBC,
//! psycopg, asyncpg: Parse, Bind, Describe, Execute).
//!
//! Queries go to the query layer as statements parsed in PostgreSQL's dialect, so its guard,
//! limits and customer filter apply as at every door; a prepared statement is planned once at
//! Parse to describe its parameters and columns, and planned again with the values at Execute.
//! The door answers what concerns the session itself: `SET` and `SHOW` of settings (with
//! datafusion-postgres's hook), `BEGIN`, `COMMIT` and `ROLLBACK` (every transaction here is
//! read-only), `DISCARD`, `RESET` and `DEALLOCATE`.
//!
//! Rows are encoded to PostgreSQL's text or binary forms by arrow-pg, as the client asks per
//! column. An answer cut at `sql.max_rows` comes with a `NOTICE` saying so.

use std::{fmt::Debug, sync::Arc};

use arrow_pg::datatypes::{arrow_schema_to_pg_fields, df, encode_recordbatch, into_pg_type};
use async_trait::async_trait;
use datafusion_postgres::{QueryHook, arrow_pg, hooks::set_show::SetShowHook};
use futures::{Sink, SinkExt};
use imagelake_sql::{
    Answer, Asker, Query, Sql,
    datafusion::{
        arrow::datatypes::{DataType, SchemaRef},
        common::ParamValues,
        sql::{
            parser::Statement as Parsed,
            sqlparser::ast::{self, Statement},
        },
    },
};
use pgwire::{
    api::{
        ClientInfo, ClientPortalStore, Type,
        portal::{Format, Portal},
        query::{ExtendedQueryHandler, SimpleQueryHandler},
        results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag},
        stmt::QueryParser,
        store::PortalStore,
    },
    error::{ErrorInfo, PgWireError, PgWireResult},
    messages::{PgWireBackendMessage, response::TransactionStatus},
    types::format::FormatOptions,
};

use crate::{Door, errors, functions::setting, rewrite};

/// A connection's query handlers.
pub struct Session {
    door: Arc<Door>,
    parser: Arc<Parser>,
}

impl Session {
    pub fn new(door: Arc<Door>) -> Self {
        Self {
            parser: Arc::new(Parser { door: door.clone() }),
            door,
        }
    }
}

/// A statement as Parse leaves it.
#[derive(Debug, Clone)]
pub enum Prepared {
    /// Answered by the door.
    Command(Arc<Statement>),
    /// A query, with what its plan says it takes and gives.
    Query {
        sql: Arc<str>,
        statement: Arc<Statement>,
        /// The parameters' types as sent to the client: its own where it gave them, else the
        /// plan's, else text.
        wire_types: Vec<Type>,
        inferred: Vec<Option<DataType>>,
        schema: SchemaRef,
    },
}

/// Whether the door answers `statement` itself.
fn is_command(statement: &Statement) -> bool {
    matches!(
        statement,
        Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Set(_)
            | Statement::ShowVariable { .. }
            | Statement::Discard { .. }
            | Statement::Reset(_)
            | Statement::Deallocate { .. }
            | Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. }
    )
}

/// Who is logged in on this connection.
fn asker<C: ClientInfo + ?Sized>(client: &C) -> PgWireResult<Arc<Asker>> {
    client
        .session_extensions()
        .get::<Asker>()
        .ok_or_else(|| errors::error("28000", "not logged in"))
}

impl Door {
    /// Refuses to go on for a key revoked since the connection logged in (looked up again
    /// every `auth::RECHECK`); the admin token is the process's.
    async fn still_valid<C: ClientInfo + ?Sized>(
        &self,
        client: &C,
        asker: &Asker,
    ) -> PgWireResult<()> {
        if asker.viewer == imagelake_sql::Viewer::Admin {
            return Ok(());
        }
        let Some(checked) = client.session_extensions().get::<crate::auth::Checked>() else {
            return Ok(());
        };
        let due = checked
            .0
            .lock()
            .map(|at| at.elapsed() >= crate::auth::RECHECK)
            .unwrap_or(true);
        if !due {
            return Ok(());
        }
        let id = asker
            .key
            .parse()
            .map_err(|_| errors::error("28000", "this connection has no key"))?;
        match self.state.store.find_key_by_id(id).await {
            Ok(Some(_)) => {
                if let Ok(mut at) = checked.0.lock() {
                    *at = std::time::Instant::now();
                }
                Ok(())
            }
            Ok(None) => Err(PgWireError::UserError(Box::new(
                pgwire::error::ErrorInfo::new(
                    "FATAL".to_owned(),
                    "28000".to_owned(),
                    "the key of this connection was revoked".to_owned(),
                ),
            ))),
            Err(e) => Err(errors::error(
                "08006",
                format!("the key store did not answer: {e}"),
            )),
        }
    }

    /// The session additions for `asker`'s kind of session.
    fn setup_for(&self, asker: &Asker) -> imagelake_sql::SessionSetup {
        match asker.viewer {
            imagelake_sql::Viewer::Customer(_) => self.customer_tables.clone(),
            imagelake_sql::Viewer::Admin | imagelake_sql::Viewer::Analyst => {
                self.every_table.clone()
            }
        }
    }

    /// Parses `sql` in PostgreSQL's dialect.
    fn parse(&self, sql: &str) -> PgWireResult<Vec<Statement>> {
        let mut statements = self
            .parser
            .parse(&rewrite::replace_known(sql))
            .map_err(|e| errors::error("42601", format!("syntax error: {e}")))?;
        for statement in &mut statements {
            rewrite::backslash_escapes(statement);
            rewrite::qualify_activity(statement);
            rewrite::visible_tables_on_the_search_path(statement);
            rewrite::drop_correlated_subqueries_in_case(statement);
            rewrite::aggregate_scalar_subqueries(statement);
        }
        Ok(statements)
    }

    /// Runs a query through the query layer.
    async fn run(
        &self,
        asker: &Asker,
        sql: &str,
        statement: Statement,
        params: ParamValues,
    ) -> PgWireResult<Answer> {
        let engine = self.engine.get(&self.state).await.map_err(|e| {
            errors::error("XX000", format!("the query engine did not start: {e:#}"))
        })?;
        let query = Query {
            sql: Sql::Parsed(Box::new(Parsed::Statement(Box::new(statement)))),
            params,
            setup: Some(self.setup_for(asker)),
        };
        engine
            .query(asker, query)
            .await
            .map_err(|e| errors::from_query(&e, sql))
    }
}

/// Answers a statement the door handles itself.
async fn command<C>(door: &Door, client: &mut C, statement: &Statement) -> PgWireResult<Response>
where
    C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::PortalStore: PortalStore,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let tag = |name: &str| Ok(Response::Execution(Tag::new(name)));
    match statement {
        Statement::StartTransaction { .. } => Ok(Response::TransactionStart(Tag::new("BEGIN"))),
        Statement::Commit { .. } => Ok(Response::TransactionEnd(Tag::new("COMMIT"))),
        Statement::Rollback { .. } => Ok(Response::TransactionEnd(Tag::new("ROLLBACK"))),
        Statement::Discard { .. } => tag("DISCARD ALL"),
        Statement::Reset(_) => tag("RESET"),
        Statement::Deallocate { .. } => tag("DEALLOCATE"),
        Statement::Savepoint { .. } => tag("SAVEPOINT"),
        Statement::ReleaseSavepoint { .. } => tag("RELEASE"),
        Statement::ShowVariable { variable } => show(client, variable),
        _ => SetShowHook
            .handle_simple_query(statement, &door.settings_context, client)
            .await
            .unwrap_or_else(|| tag("SET")),
    }
}

/// `SHOW name`: what the session set, else what a new PostgreSQL 16 session says.
fn show<C: ClientInfo>(client: &C, variable: &[ast::Ident]) -> PgWireResult<Response> {
    let name = show_name(variable);
    let value = match name.as_str() {
        "transaction isolation level" | "transaction_isolation" => "read committed".to_owned(),
        "time zone" | "timezone" => client
            .metadata()
            .get("TimeZone")
            .cloned()
            .unwrap_or_else(|| "UTC".to_owned()),
        _ => client
            .metadata()
            .get(&name)
            .cloned()
            .or_else(|| setting(&name).map(str::to_owned))
            .ok_or_else(|| {
                errors::error(
                    "42704",
                    format!("unrecognized configuration parameter \"{name}\""),
                )
            })?,
    };
    let fields = Arc::new(vec![FieldInfo::new(
        show_column(variable),
        None,
        None,
        Type::TEXT,
        FieldFormat::Text,
    )]);
    let mut row = DataRowEncoder::new(fields.clone());
    row.encode_field(&Some(value))?;
    let rows = vec![Ok(row.take_row())];
    Ok(Response::Query(QueryResponse::new(
        fields,
        futures::stream::iter(rows),
    )))
}

/// The setting `SHOW` names, in lower case and with its words.
fn show_name(variable: &[ast::Ident]) -> String {
    variable
        .iter()
        .map(|part| part.value.to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The column `SHOW` answers in, as PostgreSQL names it.
fn show_column(variable: &[ast::Ident]) -> String {
    match show_name(variable).as_str() {
        "transaction isolation level" => "transaction_isolation".to_owned(),
        "time zone" | "timezone" => "TimeZone".to_owned(),
        other => other.to_owned(),
    }
}

/// Refuses anything but the end of a transaction that failed, as PostgreSQL does.
fn check_transaction<C: ClientInfo>(client: &C, statement: &Statement) -> PgWireResult<()> {
    let ends = matches!(
        statement,
        Statement::Commit { .. } | Statement::Rollback { .. }
    );
    if client.transaction_status() == TransactionStatus::Error && !ends {
        return Err(errors::error(
            "25P01",
            "current transaction is aborted, commands ignored until end of transaction block",
        ));
    }
    Ok(())
}

/// The answer's rows for the client, in `format`; the answer's hold on the engine's limits
/// lasts until the last row is sent. A cut answer is announced with a `NOTICE`.
async fn respond<C>(client: &mut C, answer: Answer, format: &Format) -> PgWireResult<QueryResponse>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    if answer.truncated {
        let notice = ErrorInfo::new(
            "NOTICE".to_owned(),
            "01000".to_owned(),
            format!(
                "the answer was cut at {} rows (sql.max_rows); aggregate or add a LIMIT",
                answer.rows
            ),
        );
        client
            .send(PgWireBackendMessage::NoticeResponse(notice.into()))
            .await?;
    }
    let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
    let fields = Arc::new(arrow_schema_to_pg_fields(
        &answer.schema,
        format,
        Some(options),
    )?);
    let Answer { batches, held, .. } = answer;
    let for_rows = fields.clone();
    let rows = batches
        .into_iter()
        .flat_map(move |batch| encode_recordbatch(for_rows.clone(), batch))
        .chain(std::iter::from_fn(move || {
            let _sent = &held;
            None
        }));
    Ok(QueryResponse::new(fields, futures::stream::iter(rows)))
}

#[async_trait]
impl SimpleQueryHandler for Session {
    async fn do_query<C>(&self, client: &mut C, sql: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let asker = asker(client)?;
        self.door.still_valid(client, &asker).await?;
        let statements = self.door.parse(sql)?;
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let mut responses = Vec::with_capacity(statements.len());
        for statement in statements {
            check_transaction(client, &statement)?;
            if is_command(&statement) {
                responses.push(command(&self.door, client, &statement).await?);
                continue;
            }
            let answer = self
                .door
                .run(&asker, sql, statement, ParamValues::List(Vec::new()))
                .await?;
            let response = respond(client, answer, &Format::UnifiedText).await?;
            responses.push(Response::Query(response));
        }
        Ok(responses)
    }
}

/// Parses and describes prepared statements.
pub struct Parser {
    door: Arc<Door>,
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut statements = self.door.parse(sql)?;
        let statement = match statements.len() {
            0 => return Ok(None),
            1 => statements.remove(0),
            _ => {
                return Err(errors::error(
                    "42601",
                    "cannot insert multiple commands into a prepared statement",
                ));
            }
        };
        if is_command(&statement) {
            return Ok(Some(Prepared::Command(Arc::new(statement))));
        }
        let mut statement = statement;
        rewrite::cast_declared(&mut statement, types);
        let asker = asker(client)?;
        let engine = self.door.engine.get(&self.door.state).await.map_err(|e| {
            errors::error("XX000", format!("the query engine did not start: {e:#}"))
        })?;
        let query = Query {
            sql: Sql::Parsed(Box::new(Parsed::Statement(Box::new(statement.clone())))),
            params: ParamValues::List(Vec::new()),
            setup: Some(self.door.setup_for(&asker)),
        };
        let described = engine
            .describe(&asker, query)
            .await
            .map_err(|e| errors::from_query(&e, sql))?;
        let count = described.params.len().max(types.len());
        let wire_types = (0..count)
            .map(|i| {
                let given = types.get(i).cloned().flatten();
                match (given, described.params.get(i).cloned().flatten()) {
                    (Some(given), _) if given != Type::UNKNOWN => Ok(given),
                    (_, Some(inferred)) => into_pg_type(&inferred),
                    _ => Ok(Type::TEXT),
                }
            })
            .collect::<PgWireResult<Vec<_>>>()?;
        Ok(Some(Prepared::Query {
            sql: sql.into(),
            statement: Arc::new(statement),
            wire_types,
            inferred: described.params,
            schema: described.schema,
        }))
    }

    fn get_parameter_types(&self, statement: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(match statement {
            Prepared::Query { wire_types, .. } => wire_types.clone(),
            Prepared::Command(_) => Vec::new(),
        })
    }

    fn get_result_schema(
        &self,
        statement: &Prepared,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let format = format.unwrap_or(&Format::UnifiedText);
        match statement {
            Prepared::Query { schema, .. } => arrow_schema_to_pg_fields(schema, format, None),
            Prepared::Command(command) => match command.as_ref() {
                Statement::ShowVariable { variable } => Ok(vec![FieldInfo::new(
                    show_column(variable),
                    None,
                    None,
                    Type::TEXT,
                    FieldFormat::Text,
                )]),
                _ => Ok(Vec::new()),
            },
        }
    }
}

#[async_trait]
impl ExtendedQueryHandler for Session {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let asker = asker(client)?;
        self.door.still_valid(client, &asker).await?;
        match &portal.statement.statement {
            Prepared::Command(statement) => {
                check_transaction(client, statement)?;
                command(&self.door, client, statement).await
            }
            Prepared::Query {
                sql,
                statement,
                wire_types,
                inferred,
                ..
            } => {
                check_transaction(client, statement)?;
                let inferred: Vec<Option<&DataType>> =
                    inferred.iter().map(Option::as_ref).collect();
                let server: Vec<Option<&Type>> = wire_types.iter().map(Some).collect();
                let params =
                    df::deserialize_parameters_with_server_types(portal, &inferred, &server)?;
                let answer = self
                    .door
                    .run(&asker, sql, statement.as_ref().clone(), params)
                    .await?;
                let response = respond(client, answer, &portal.result_column_format).await?;
                Ok(Response::Query(response))
            }
        }
    }
}
