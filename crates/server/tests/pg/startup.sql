-- What BI tools send when they connect and browse, replayed through psql with ON_ERROR_STOP
-- (crates/server/tests/pg.rs): each statement must be answered.

-- Grafana (PostgreSQL data source: version check, then the query builder's schema lists).
SELECT current_setting('server_version_num')::int/100 AS version;
SELECT quote_ident(table_name) AS "table" FROM information_schema.tables
  WHERE quote_ident(table_schema) NOT IN ('information_schema', 'pg_catalog', '_timescaledb_cache', '_timescaledb_catalog', '_timescaledb_internal', '_timescaledb_config', 'timescaledb_information', 'timescaledb_experimental')
    AND table_type = 'BASE TABLE'
    AND quote_ident(table_schema) IN (SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
        FROM
            generate_series(
                array_lower(string_to_array(current_setting('search_path'),','),1),
                array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          );
SELECT quote_ident(column_name) AS "column", data_type AS "type" FROM information_schema.columns
  WHERE quote_ident(table_name) = 'images' AND table_schema = 'public';

-- Metabase (connection set-up and sync).
SET extra_float_digits = 2;
SET application_name = 'Metabase v0.50.0';
SHOW TRANSACTION ISOLATION LEVEL;
SHOW timezone;
SELECT nspname FROM pg_namespace WHERE nspname !~ '^pg_' AND nspname <> 'information_schema'
  AND has_schema_privilege(nspname, 'USAGE');
SELECT t.schemaname, t.tablename FROM pg_catalog.pg_tables t
  WHERE t.schemaname !~ '^pg_' AND t.schemaname <> 'information_schema'
    AND has_table_privilege(quote_ident(t.schemaname) || '.' || quote_ident(t.tablename), 'SELECT');
SELECT v.schemaname, v.viewname FROM pg_catalog.pg_views v
  WHERE v.schemaname !~ '^pg_' AND v.schemaname <> 'information_schema';
SELECT m.schemaname, m.matviewname FROM pg_catalog.pg_matviews m WHERE m.schemaname !~ '^pg_';

-- Superset (SQLAlchemy's dialect at connect).
SELECT pg_catalog.version();
SELECT pg_namespace.nspname FROM pg_namespace WHERE pg_namespace.nspname NOT LIKE 'pg/_%' ESCAPE '/' ORDER BY pg_namespace.nspname;
SELECT current_schema();
SHOW standard_conforming_strings;
SET datestyle = 'ISO, MDY';
SHOW server_version;

-- DBeaver and pgAdmin.
SELECT 'images'::regclass::oid > 0 AS known;
SELECT count(*) FROM pg_stat_activity;
SELECT format_type(23, NULL), pg_get_expr(NULL, 0) IS NULL AS no_default;

-- Transactions as tools wrap their reads, and the session's end.
BEGIN READ ONLY;
SELECT count(*) FROM events;
COMMIT;
DISCARD ALL;
RESET ALL;
