//! What the door adds to each query's session: `pg_catalog` and the functions clients call.
//!
//! `pg_catalog` is datafusion-pg-catalog's, built from the tables the asker's session sees, so a
//! customer's key finds only its own. Its providers are made once per kind of asker (every
//! table, or a customer's tables) and kept: they number the tables (OIDs) as they first meet
//! them, and a client that reads an OID in one query and asks about it in the next (psql's
//! `\d`, JDBC's metadata) must find the same numbers, although each query has a session of its
//! own. The static catalog tables are read once.
//!
//! The functions are the catalog crate's (`format_type`, `has_*_privilege`, `quote_ident`,
//! `pg_get_expr`, `pg_table_is_visible`, ...) and those it leaves out: `version()` in
//! PostgreSQL's form (SQLAlchemy reads the version from it), `current_setting()` (Grafana asks
//! for `server_version_num`), `set_config()` and `to_regtype()`.

use std::sync::{Arc, OnceLock};

use datafusion_postgres::datafusion_pg_catalog::pg_catalog::{
    self as catalog, PgCatalogSchemaProvider, PgCatalogStaticTables, array_bounds_udf,
    context::EmptyContextProvider, format_type,
    generate_series_arg_coercion::CoerceIntArgsToBigInt, has_privilege_udf,
    oid_type_planner::PgOidTypePlanner, pg_get_expr_udf, quote_ident_udf,
};
use imagelake_sql::{
    SessionSetup,
    datafusion::{
        arrow::{
            array::{Array, ArrayRef, StringArray},
            datatypes::DataType,
        },
        catalog::{SchemaProvider, TableFunctionImpl, TableProvider},
        common::{DataFusionError, ScalarValue, cast::as_string_array, exec_err},
        error::Result,
        execution::session_state::SessionStateBuilder,
        logical_expr::{
            ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
            create_udf,
        },
        prelude::SessionContext,
    },
};

/// The catalog the door's sessions share.
pub struct PgCatalog {
    statics: Arc<PgCatalogStaticTables>,
    functions: Vec<ScalarUDF>,
    keywords: Arc<dyn TableFunctionImpl>,
    /// `pg_catalog` over every table (the admin, analysts), and over a customer's tables.
    every_table: OnceLock<Arc<dyn SchemaProvider>>,
    customer_tables: OnceLock<Arc<dyn SchemaProvider>>,
}

/// `pg_catalog` with `pg_stat_activity`, which the catalog crate leaves out and DBeaver and
/// pgAdmin read: its columns, and no rows (sessions are not shown to other sessions here).
#[derive(Debug)]
struct WithActivity {
    catalog: Arc<dyn SchemaProvider>,
    activity: Arc<dyn TableProvider>,
}

const ACTIVITY: &str = "pg_stat_activity";

#[async_trait::async_trait]
impl SchemaProvider for WithActivity {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.catalog.table_names();
        names.push(ACTIVITY.to_owned());
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if name.eq_ignore_ascii_case(ACTIVITY) {
            return Ok(Some(self.activity.clone()));
        }
        self.catalog.table(name).await
    }

    fn table_exist(&self, name: &str) -> bool {
        name.eq_ignore_ascii_case(ACTIVITY) || self.catalog.table_exist(name)
    }
}

/// An empty `pg_stat_activity` with PostgreSQL's main columns.
fn activity() -> Result<Arc<dyn TableProvider>> {
    use imagelake_sql::datafusion::{
        arrow::datatypes::{Field, Schema, TimeUnit},
        datasource::MemTable,
    };
    let text = |name: &str| Field::new(name, DataType::Utf8, true);
    let int = |name: &str| Field::new(name, DataType::Int32, true);
    let time = |name: &str| {
        Field::new(
            name,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        )
    };
    let schema = Arc::new(Schema::new(vec![
        int("datid"),
        text("datname"),
        int("pid"),
        int("usesysid"),
        text("usename"),
        text("application_name"),
        text("client_addr"),
        int("client_port"),
        time("backend_start"),
        time("xact_start"),
        time("query_start"),
        time("state_change"),
        text("wait_event_type"),
        text("wait_event"),
        text("state"),
        text("query"),
        text("backend_type"),
    ]));
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![]])?))
}

/// The default catalog of the query layer's sessions.
const CATALOG: &str = "datafusion";

impl PgCatalog {
    pub fn new() -> Result<Self> {
        let statics = Arc::new(PgCatalogStaticTables::try_new()?);
        let mut functions = vec![
            catalog::create_current_database_udf(CATALOG),
            catalog::create_current_schema_udf(),
            catalog::create_current_schemas_udf(),
            catalog::create_pg_get_userbyid_udf(),
            catalog::create_pg_table_is_visible(),
            catalog::create_session_user_udf(),
            catalog::create_pg_get_partkeydef_udf(),
            catalog::create_pg_relation_is_publishable_udf(),
            catalog::create_pg_get_statisticsobjdef_columns_udf(),
            catalog::create_pg_encoding_to_char_udf(),
            catalog::create_pg_backend_pid_udf(),
            catalog::create_pg_relation_size_udf(),
            catalog::create_pg_total_relation_size_udf(),
            catalog::create_pg_stat_get_numscans(),
            catalog::create_pg_get_constraintdef(),
            catalog::create_pg_get_partition_ancestors_udf(),
            format_type::create_format_type_udf(),
            pg_get_expr_udf::create_pg_get_expr_udf(),
            quote_ident_udf::create_quote_ident_udf(),
            quote_ident_udf::create_parse_ident_udf(),
            array_bounds_udf::create_array_upper_udf(),
            array_bounds_udf::create_array_lower_udf(),
            version(),
            current_setting(),
            set_config(),
            to_regtype(),
            like_escape(),
            constant("pg_get_serial_sequence", 2, ScalarValue::Utf8(None)),
            constant(
                "pg_collation_is_visible",
                1,
                ScalarValue::Boolean(Some(true)),
            ),
            constant("pg_type_is_visible", 1, ScalarValue::Boolean(Some(true))),
            ScalarUDF::new_from_impl(JsonBuildObject::default()),
        ];
        for privilege in [
            "has_table_privilege",
            "has_schema_privilege",
            "has_database_privilege",
            "has_any_column_privilege",
        ] {
            functions.push(has_privilege_udf::create_has_privilege_udf(privilege));
        }
        Ok(Self {
            keywords: statics.pg_get_keywords.clone(),
            statics,
            functions,
            every_table: OnceLock::new(),
            customer_tables: OnceLock::new(),
        })
    }

    /// The setup of a session for every table (`customer` false) or a customer's tables.
    pub fn setup(self: &Arc<Self>, customer: bool) -> SessionSetup {
        let this = self.clone();
        Arc::new(move |ctx| this.install(ctx, customer))
    }

    fn install(&self, ctx: &SessionContext, customer: bool) -> Result<()> {
        let default = ctx
            .catalog(CATALOG)
            .ok_or_else(|| DataFusionError::Internal(format!("no catalog {CATALOG}")))?;
        let kept = if customer {
            &self.customer_tables
        } else {
            &self.every_table
        };
        let provider = match kept.get() {
            Some(provider) => provider.clone(),
            None => {
                let made: Arc<dyn SchemaProvider> = Arc::new(WithActivity {
                    catalog: Arc::new(PgCatalogSchemaProvider::try_new(
                        ctx.state().catalog_list().clone(),
                        self.statics.clone(),
                        EmptyContextProvider,
                    )?),
                    activity: activity()?,
                });
                kept.get_or_init(|| made).clone()
            }
        };
        default.register_schema("pg_catalog", provider)?;
        for function in &self.functions {
            ctx.register_udf(function.clone());
        }
        ctx.register_udtf("pg_get_keywords", self.keywords.clone());
        // `regclass`, `regtype`, ... parse as int4 (the catalog crate rewrites name casts).
        let state = ctx.state_ref();
        let existing = state.read().clone();
        *state.write() = SessionStateBuilder::new_from_existing(existing)
            .with_type_planner(Arc::new(PgOidTypePlanner))
            .build();
        CoerceIntArgsToBigInt::widen(ctx);
        Ok(())
    }
}

/// The PostgreSQL release whose wire and catalog the door speaks.
pub const SERVER_VERSION: &str = "16.6";
const SERVER_VERSION_NUM: &str = "160006";

/// `version()`: PostgreSQL's form first, then what answers.
pub fn version_text() -> String {
    format!(
        "PostgreSQL {SERVER_VERSION} on x86_64-pc-linux-gnu (imagelake {}, Apache DataFusion)",
        env!("CARGO_PKG_VERSION")
    )
}

/// The settings `current_setting()` answers, as a new session of PostgreSQL 16 would (the ones
/// clients ask at connect).
pub fn setting(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_lowercase().as_str() {
        "server_version" => SERVER_VERSION,
        "server_version_num" => SERVER_VERSION_NUM,
        "server_encoding" | "client_encoding" => "UTF8",
        "search_path" => "public",
        "standard_conforming_strings" => "on",
        "transaction_isolation" | "default_transaction_isolation" => "read committed",
        "transaction_read_only" | "default_transaction_read_only" => "on",
        "timezone" => "UTC",
        "datestyle" => "ISO, MDY",
        "intervalstyle" => "postgres",
        "integer_datetimes" => "on",
        "max_identifier_length" => "63",
        "max_index_keys" => "32",
        "lc_collate" | "lc_ctype" => "C.UTF-8",
        "is_superuser" => "off",
        "statement_timeout" | "lock_timeout" | "idle_in_transaction_session_timeout" => "0",
        "extra_float_digits" => "1",
        "application_name" => "",
        "bytea_output" => "hex",
        _ => return None,
    })
}

fn version() -> ScalarUDF {
    create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|_| {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
                version_text(),
            ))))
        }),
    )
}

fn current_setting() -> ScalarUDF {
    create_udf(
        "current_setting",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|args| {
            let lookup = |name: &str| match setting(name) {
                Some(value) => Ok(value),
                None => exec_err!("unrecognized configuration parameter \"{name}\""),
            };
            match &args[0] {
                ColumnarValue::Scalar(ScalarValue::Utf8(Some(name))) => Ok(ColumnarValue::Scalar(
                    ScalarValue::Utf8(Some(lookup(name)?.to_owned())),
                )),
                ColumnarValue::Scalar(_) => Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None))),
                ColumnarValue::Array(names) => {
                    let names = as_string_array(names)?;
                    let values = (0..names.len())
                        .map(|i| {
                            if names.is_null(i) {
                                Ok(None)
                            } else {
                                lookup(names.value(i)).map(Some)
                            }
                        })
                        .collect::<Result<StringArray>>()?;
                    Ok(ColumnarValue::Array(Arc::new(values) as ArrayRef))
                }
            }
        }),
    )
}

/// `set_config(name, value, is_local)`: answers the value, as PostgreSQL does; a query changes
/// nothing of a session here.
fn set_config() -> ScalarUDF {
    create_udf(
        "set_config",
        vec![DataType::Utf8, DataType::Utf8, DataType::Boolean],
        DataType::Utf8,
        Volatility::Volatile,
        Arc::new(|args| Ok(args[1].clone())),
    )
}

/// A function of `args` arguments of any type that always answers `value`: the catalog
/// functions whose answer is the same for every object here (no sequences; every type and
/// collation visible).
fn constant(name: &'static str, args: usize, value: ScalarValue) -> ScalarUDF {
    ScalarUDF::new_from_impl(Constant {
        name,
        signature: Signature::any(args, Volatility::Immutable),
        value,
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Constant {
    name: &'static str,
    signature: Signature,
    value: ScalarValue,
}

impl ScalarUDFImpl for Constant {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(self.value.data_type())
    }

    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(self.value.clone()))
    }
}

/// `json_build_object(key, value, ...)`: a JSON object per row, as text.
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonBuildObject {
    signature: Signature,
}

impl Default for JsonBuildObject {
    fn default() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for JsonBuildObject {
    fn name(&self) -> &str {
        "json_build_object"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if !args.args.len().is_multiple_of(2) {
            return exec_err!("json_build_object takes keys and values in pairs");
        }
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let objects = (0..args.number_rows)
            .map(|row| {
                let mut object = serde_json::Map::new();
                for pair in arrays.chunks(2) {
                    let key = ScalarValue::try_from_array(&pair[0], row)?;
                    let value = ScalarValue::try_from_array(&pair[1], row)?;
                    object.insert(text_of(&key), json_of(&value));
                }
                Ok(Some(serde_json::Value::Object(object).to_string()))
            })
            .collect::<Result<StringArray>>()?;
        Ok(ColumnarValue::Array(Arc::new(objects)))
    }
}

fn text_of(value: &ScalarValue) -> String {
    match value {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::Utf8View(Some(s))
        | ScalarValue::LargeUtf8(Some(s)) => s.clone(),
        other => other.to_string(),
    }
}

fn json_of(value: &ScalarValue) -> serde_json::Value {
    use serde_json::Value as J;
    if value.is_null() {
        return J::Null;
    }
    match value {
        ScalarValue::Boolean(Some(b)) => J::Bool(*b),
        ScalarValue::Int8(Some(n)) => J::from(*n),
        ScalarValue::Int16(Some(n)) => J::from(*n),
        ScalarValue::Int32(Some(n)) => J::from(*n),
        ScalarValue::Int64(Some(n)) => J::from(*n),
        ScalarValue::UInt8(Some(n)) => J::from(*n),
        ScalarValue::UInt16(Some(n)) => J::from(*n),
        ScalarValue::UInt32(Some(n)) => J::from(*n),
        ScalarValue::UInt64(Some(n)) => J::from(*n),
        ScalarValue::Float32(Some(f)) => J::from(f64::from(*f)),
        ScalarValue::Float64(Some(f)) => J::from(*f),
        other => J::String(text_of(other)),
    }
}

/// `like_escape(pattern, escape)`: a `LIKE` pattern escaped with `escape` as one escaped with
/// backslashes, for `LIKE ... ESCAPE` with a computed pattern (see `rewrite::backslash_escapes`).
fn like_escape() -> ScalarUDF {
    create_udf(
        "like_escape",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let (patterns, escapes) = (as_string_array(&arrays[0])?, as_string_array(&arrays[1])?);
            let converted: StringArray = patterns
                .iter()
                .zip(escapes.iter())
                .map(|(pattern, escape)| {
                    let escape = escape.and_then(|e| e.chars().next()).unwrap_or('\\');
                    pattern.map(|p| crate::rewrite::with_backslashes(p, escape))
                })
                .collect();
            Ok(ColumnarValue::Array(Arc::new(converted) as ArrayRef))
        }),
    )
}

/// `to_regtype(name)`: the type's name when it is one of the common types, else null (clients
/// ask it to learn whether a type exists).
fn to_regtype() -> ScalarUDF {
    fn known(name: &str) -> Option<&'static str> {
        let name = name
            .trim()
            .trim_start_matches("pg_catalog.")
            .to_ascii_lowercase();
        Some(match name.as_str() {
            "bool" | "boolean" => "boolean",
            "int2" | "smallint" => "smallint",
            "int4" | "int" | "integer" => "integer",
            "int8" | "bigint" => "bigint",
            "float4" | "real" => "real",
            "float8" | "double precision" => "double precision",
            "numeric" | "decimal" => "numeric",
            "text" => "text",
            "varchar" | "character varying" => "character varying",
            "bytea" => "bytea",
            "date" => "date",
            "timestamp" | "timestamp without time zone" => "timestamp without time zone",
            "timestamptz" | "timestamp with time zone" => "timestamp with time zone",
            "interval" => "interval",
            "json" => "json",
            "oid" => "oid",
            _ => return None,
        })
    }
    create_udf(
        "to_regtype",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |args| match &args[0] {
            ColumnarValue::Scalar(ScalarValue::Utf8(name)) => Ok(ColumnarValue::Scalar(
                ScalarValue::Utf8(name.as_deref().and_then(known).map(str::to_owned)),
            )),
            ColumnarValue::Scalar(_) => Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None))),
            ColumnarValue::Array(names) => {
                let names = as_string_array(names)?;
                let types: StringArray = names.iter().map(|n| n.and_then(known)).collect();
                Ok(ColumnarValue::Array(Arc::new(types) as ArrayRef))
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_objects_are_built_from_pairs() {
        use imagelake_sql::datafusion::arrow::{array::Int64Array, datatypes::Field};
        let udf = JsonBuildObject::default();
        let keys: ArrayRef = Arc::new(StringArray::from(vec!["start", "start"]));
        let values: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None]));
        let answer = udf
            .invoke_with_args(ScalarFunctionArgs {
                args: vec![ColumnarValue::Array(keys), ColumnarValue::Array(values)],
                arg_fields: vec![
                    Arc::new(Field::new("k", DataType::Utf8, false)),
                    Arc::new(Field::new("v", DataType::Int64, true)),
                ],
                number_rows: 2,
                return_field: Arc::new(Field::new("j", DataType::Utf8, true)),
                config_options: Arc::default(),
            })
            .unwrap();
        let ColumnarValue::Array(objects) = answer else {
            panic!("an array")
        };
        let objects = as_string_array(&objects).unwrap();
        assert_eq!(objects.value(0), r#"{"start":1}"#);
        assert_eq!(objects.value(1), r#"{"start":null}"#);
    }

    #[test]
    fn the_version_reads_as_postgres() {
        assert!(version_text().starts_with("PostgreSQL 16.6 "));
        assert_eq!(setting("SERVER_VERSION_NUM"), Some("160006"));
        assert_eq!(setting("no_such_thing"), None);
    }
}
