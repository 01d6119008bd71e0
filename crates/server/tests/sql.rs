//! SQL over a lake the writer made from real uploads, through `POST /v1/sql`: the `.slt` files
//! of `tests/sql/` (sqllogictest) as an analyst; the customer filter door by door; the limits
//! (row cap, timeout, memory cap, queries at once, a client that goes away); partition
//! pruning on time predicates; and files rewritten in place read anew.

mod common;

use std::{path::Path, sync::Arc, time::Duration};

use common::{ADMIN, TestServer, corpus, wait_for};
use futures::StreamExt;
use imagelake_core::{ManualClock, duration::HumanDuration, lake::TableDecl};
use imagelake_runtime::jobs::{Job, control};
use imagelake_sql::Transforms;
use object_store::ObjectStoreExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};

/// The HTTP door as sqllogictest's database.
struct HttpDb {
    client: reqwest::Client,
    url: String,
    key: String,
}

#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

#[async_trait::async_trait]
impl AsyncDB for HttpDb {
    type Error = Refused;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Refused> {
        let (status, body) = query(&self.client, &self.url, &self.key, sql, &[]).await;
        if status != StatusCode::OK {
            return Err(Refused(format!(
                "{}: {}",
                body["error"]["code"].as_str().unwrap_or("?"),
                body["error"]["message"].as_str().unwrap_or("?")
            )));
        }
        let types = body["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| match c["type"].as_str().unwrap() {
                "SMALLINT" | "INTEGER" | "BIGINT" => DefaultColumnType::Integer,
                "REAL" | "DOUBLE" => DefaultColumnType::FloatingPoint,
                _ => DefaultColumnType::Text,
            })
            .collect();
        let rows = body["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row.as_array().unwrap().iter().map(cell).collect())
            .collect();
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => "NULL".into(),
        Value::String(s) if s.is_empty() => "(empty)".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

async fn query(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    sql: &str,
    params: &[Value],
) -> (StatusCode, Value) {
    let response = client
        .post(url)
        .bearer_auth(key)
        .json(&json!({"sql": sql, "params": params}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// A lake of hour 10 of 2026-11-30: customers alpha and beta, two real photos each, the hour
/// closed and transformed.
async fn lake() -> (TestServer, [(String, String); 2]) {
    let clock = Arc::new(ManualClock::new("2026-11-30T10:05:00Z".parse().unwrap()));
    let server = TestServer::with_lake(clock.clone(), |s| {
        s.lake.retention = Some(HumanDuration(Duration::from_secs(7 * 86_400)));
        s.sql.max_rows = 1000;
        s.sql.timeout = HumanDuration(Duration::from_secs(5));
        s.sql.max_memory_bytes = 64 << 20;
        s.sql.max_concurrent_per_key = 1;
    })
    .await;
    let alpha = server.customer("alpha").await;
    let beta = server.customer("beta").await;
    let photos = corpus();
    for ((_, key), photos) in [&alpha, &beta].into_iter().zip(photos.chunks(2)) {
        for photo in photos {
            let (status, body) = server
                .upload(key, std::fs::read(photo).unwrap(), None)
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            server.wait_settled(key, body["id"].as_str().unwrap()).await;
        }
    }
    clock.set("2026-11-30T11:06:00Z".parse().unwrap());
    let objects = server.objects_dir();
    for table in ["events", "api_requests"] {
        let marker = objects.join(format!("lake/{table}/dt=2026-11-30/hour=10/_SUCCESS"));
        wait_for(Duration::from_secs(30), || async {
            marker.exists().then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("{table} hour 10 closed"));
    }
    let job: Arc<dyn Job> = Arc::new(Transforms::new(&server.state));
    control::run_here(&server.state, job, "2026-11-30T10")
        .await
        .expect("hour 10 transformed");
    (server, [alpha, beta])
}

#[tokio::test]
async fn sql_over_the_lake_is_right_safe_and_bounded() {
    let (server, [alpha, beta]) = lake().await;
    let (analyst_id, analyst) = server.company_key("analyst", "dashboards").await;
    let url = server.url("/v1/sql");

    // The .slt files, as the analyst.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sql");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for file in files {
        let (client, url, key) = (server.client.clone(), url.clone(), analyst.clone());
        let mut runner = sqllogictest::Runner::new(move || {
            let db = HttpDb {
                client: client.clone(),
                url: url.clone(),
                key: key.clone(),
            };
            async move { Ok(db) }
        });
        runner.with_column_validator(|_, _| true);
        runner
            .run_file_async(&file)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }

    customers_see_their_own_rows(&server, &url, &alpha, &beta).await;
    parameters_and_formats(&server, &url, &analyst).await;
    limits_hold(&server, &url, &analyst).await;
    keys_and_roles(&server, &url, &analyst_id, &analyst).await;
    time_predicates_prune_hours(&server, &url, &alpha.1).await;
    rewritten_files_are_read_anew(&server, &url).await;
}

async fn customers_see_their_own_rows(
    server: &TestServer,
    url: &str,
    (alpha_id, alpha): &(String, String),
    (beta_id, _): &(String, String),
) {
    let client = &server.client;
    let scalar = |body: &Value| body["rows"][0][0].clone();
    // Every table alpha may see holds only alpha's rows, and all of them.
    for (table, own) in [
        (
            "events",
            "SELECT count(*) FROM events WHERE type = 'image.received'",
        ),
        ("images", "SELECT count(*) FROM images"),
        ("uploads_hourly", "SELECT sum(uploads) FROM uploads_hourly"),
        ("customers", "SELECT count(*) FROM customers"),
    ] {
        let (status, body) = query(client, url, alpha, own, &[]).await;
        assert_eq!(status, StatusCode::OK, "{table}: {body}");
        let expected = if table == "customers" { 1 } else { 2 };
        assert_eq!(scalar(&body), json!(expected), "{table}: {body}");
        let others =
            format!("SELECT count(*) FROM {table} WHERE customer_id IS DISTINCT FROM '{alpha_id}'");
        let (status, body) = query(client, url, alpha, &others, &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(scalar(&body), json!(0), "{table} shows others: {body}");
    }
    // Joins, subqueries, UNION, CTEs and a naming of beta's id find nothing of beta.
    for sql in [
        format!(
            "SELECT count(*) FROM images i JOIN customers c ON i.customer_id = c.customer_id WHERE c.customer_id = '{beta_id}'"
        ),
        format!(
            "SELECT count(*) FROM events WHERE customer_id IN (SELECT customer_id FROM customers WHERE customer_id = '{beta_id}')"
        ),
        format!(
            "SELECT count(*) FROM (SELECT customer_id FROM events UNION ALL SELECT customer_id FROM images UNION SELECT customer_id FROM customers) u WHERE customer_id = '{beta_id}'"
        ),
        format!(
            "WITH b AS (SELECT * FROM uploads_hourly WHERE customer_id = '{beta_id}') SELECT count(*) FROM b"
        ),
        "SELECT count(*) FROM customers WHERE name = 'beta'".to_owned(),
    ] {
        let (status, body) = query(client, url, alpha, &sql, &[]).await;
        assert_eq!(status, StatusCode::OK, "{sql}: {body}");
        assert_eq!(scalar(&body), json!(0), "{sql}: {body}");
    }
    // No expression of the query sees beta's rows: a division by zero or a cast that only
    // beta's rows would make does not fail.
    let probes = [
        format!("SELECT count(*) FROM events WHERE 1 / (CASE WHEN customer_id = '{beta_id}' THEN 0 ELSE 1 END) = 1"),
        format!("SELECT row_number() OVER (ORDER BY 1 / (CASE WHEN customer_id = '{beta_id}' THEN 0 ELSE 1 END)) FROM events"),
        format!("SELECT image_id, rank() OVER (PARTITION BY CAST(CASE WHEN customer_id = '{beta_id}' THEN 'x' ELSE '1' END AS INT) ORDER BY image_id) FROM images"),
        format!("SELECT count(*) FROM events WHERE dt = DATE '2026-11-30' AND hour = 10 AND 1 / (CASE WHEN customer_id = '{beta_id}' THEN 0 ELSE 1 END) = 1"),
        format!("SELECT sum(CASE WHEN customer_id = '{beta_id}' THEN CAST(name AS INT) ELSE 0 END) FROM customers"),
        "SELECT count(*) FROM customers WHERE CAST(CASE WHEN name = 'beta' THEN 'x' ELSE '1' END AS INT) = 1".to_owned(),
    ];
    for sql in probes {
        let (status, body) = query(client, url, alpha, &sql, &[]).await;
        assert_eq!(status, StatusCode::OK, "{sql}: {body}");
    }
    // Plans count whole files' rows: EXPLAIN is for analysts.
    for sql in [
        "EXPLAIN SELECT * FROM events",
        "EXPLAIN ANALYZE SELECT count(*) FROM images",
    ] {
        let (status, body) = query(client, url, alpha, sql, &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{sql}: {body}");
        assert_eq!(
            body["error"]["code"], "forbidden_statement",
            "{sql}: {body}"
        );
    }
    // The live views: alpha's own records of the metadata store.
    for (sql, expected) in [
        ("SELECT count(*) FROM live.images WHERE uploaded_at >= TIMESTAMP '2026-11-30T00:00:00Z'".to_owned(), json!(2)),
        ("SELECT count(*) FROM live.customers".to_owned(), json!(1)),
        (format!("SELECT count(*) FROM live.images WHERE uploaded_at > TIMESTAMP '2026-11-30T00:00:00Z' AND customer_id = '{beta_id}'"), json!(0)),
        (format!("SELECT count(*) FROM (SELECT * FROM live.images LIMIT 50) WHERE customer_id <> '{alpha_id}'"), json!(0)),
    ] {
        let (status, body) = query(client, url, alpha, &sql, &[]).await;
        assert_eq!(status, StatusCode::OK, "{sql}: {body}");
        assert_eq!(scalar(&body), expected, "{sql}: {body}");
    }
    // An error about alpha's own rows names no one else.
    let (status, body) = query(
        client,
        url,
        alpha,
        "SELECT CAST(name AS INT) FROM customers",
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(!body.to_string().contains("beta"), "{body}");
    // Tables without customer_id do not exist for a customer, in the catalog either.
    for table in ["job_runs", "api_requests_hourly"] {
        let (status, body) =
            query(client, url, alpha, &format!("SELECT * FROM {table}"), &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["code"], "invalid_sql", "{body}");
    }
    let (status, body) = query(
        client,
        url,
        alpha,
        "SELECT table_schema || '.' || table_name FROM information_schema.tables WHERE table_schema <> 'information_schema' ORDER BY 1",
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let tables: Vec<&str> = body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_str().unwrap())
        .collect();
    assert!(tables.contains(&"public.images"), "{tables:?}");
    assert!(
        !tables
            .iter()
            .any(|t| t.ends_with("job_runs") || t.ends_with("api_requests_hourly")),
        "{tables:?}"
    );
}

async fn parameters_and_formats(server: &TestServer, url: &str, analyst: &str) {
    let client = &server.client;
    let (status, body) = query(
        client,
        url,
        analyst,
        "SELECT count(*) AS n, $2 AS label FROM events WHERE type = $1",
        &[json!("image.received"), json!("uploads")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rows"], json!([[4, "uploads"]]), "{body}");
    assert_eq!(body["columns"][0], json!({"name": "n", "type": "BIGINT"}));
    assert_eq!(body["truncated"], false);
    let (status, body) = query(client, url, analyst, "SELECT $1", &[json!({"a": 1})]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // CSV cannot hold a list: refused before anything is sent.
    let nested = client
        .post(url)
        .bearer_auth(analyst)
        .header("accept", "text/csv")
        .json(&json!({"sql": "SELECT [1, 2] AS pair"}))
        .send()
        .await
        .unwrap();
    assert_eq!(nested.status(), StatusCode::BAD_REQUEST);
    let body: Value = nested.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains("pair"),
        "{body}"
    );

    let sql = json!({"sql": "SELECT value FROM generate_series(1, 3) ORDER BY value"});
    let ask = |accept: &'static str| {
        client
            .post(url)
            .bearer_auth(analyst)
            .header("accept", accept)
            .json(&sql)
            .send()
    };
    let csv = ask("text/csv").await.unwrap();
    assert_eq!(csv.headers()["imagelake-truncated"], "false");
    assert!(common::content_type(&csv).starts_with("text/csv"));
    assert_eq!(csv.text().await.unwrap(), "value\n1\n2\n3\n");
    let ndjson = ask("application/x-ndjson").await.unwrap();
    assert_eq!(
        ndjson.text().await.unwrap(),
        "{\"value\":1}\n{\"value\":2}\n{\"value\":3}\n"
    );
    let arrow = ask("application/vnd.apache.arrow.stream").await.unwrap();
    let bytes = arrow.bytes().await.unwrap();
    let reader = imagelake_sql::datafusion::arrow::ipc::reader::StreamReader::try_new(
        std::io::Cursor::new(bytes),
        None,
    )
    .unwrap();
    assert_eq!(reader.schema().metadata()["imagelake.truncated"], "false");
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 3);
}

async fn metric(server: &TestServer, name: &str) -> f64 {
    let text = server
        .client
        .get(server.url("/metrics"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

async fn limits_hold(server: &TestServer, url: &str, analyst: &str) {
    let client = &server.client;
    // The row cap: 1000 rows of 5000, said in the body and the headers.
    let (status, body) = query(
        client,
        url,
        analyst,
        "SELECT * FROM generate_series(1, 5000)",
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["rows"].as_array().unwrap().len(), 1000);
    assert_eq!(body["truncated"], true);
    let csv = client
        .post(url)
        .bearer_auth(analyst)
        .header("accept", "text/csv")
        .json(&json!({"sql": "SELECT * FROM generate_series(1, 5000)"}))
        .send()
        .await
        .unwrap();
    assert_eq!(csv.headers()["imagelake-truncated"], "true");
    assert_eq!(csv.headers()["imagelake-rows"], "1000");
    assert_eq!(csv.text().await.unwrap().lines().count(), 1001);

    // The memory cap.
    let (status, body) = query(
        client,
        url,
        analyst,
        "SELECT value % 20000000 AS k, count(*) FROM generate_series(1, 40000000) GROUP BY k ORDER BY k LIMIT 1",
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], "query_too_large");
    // Functions that make values from a count make them outside the memory pool, in one step
    // no timeout interrupts: refused before they run, a constant folded while planning as
    // much as a column's values.
    for bomb in [
        "SELECT repeat('x', 2000000000) AS s",
        "SELECT length(lpad('', CAST(value AS BIGINT) * 10000000)) FROM generate_series(1, 10)",
        "SELECT length(repeat(CAST(value AS VARCHAR), 70000000)) FROM generate_series(1, 3)",
        "SELECT array_repeat(1, 2000000000)",
        "SELECT cardinality(array_repeat(NULL, 500000000))",
        // A constant is spread to every row of the batch before it is repeated.
        "SELECT sum(length(repeat(repeat('x', 30000000), CAST(value > 100000 AS BIGINT)))) FROM generate_series(1, 8192)",
    ] {
        let (status, body) = query(client, url, analyst, bomb, &[]).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{bomb}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("would make"), "{bomb}: {message}");
    }
    let (status, body) = query(
        client,
        url,
        analyst,
        "SELECT lpad('a', CAST(value AS BIGINT) - 5) FROM generate_series(1, 3)",
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("a length of 0 or more"), "{message}");
    let (status, body) = query(
        client,
        url,
        analyst,
        "SELECT length(repeat('ab', 1000)) AS n, length(lpad('x', 5, 'yz')) AS p",
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rows"][0], json!([2000, 5]));

    // The timeout, and one query at once per key (the setting here): a second is refused
    // while the first runs.
    let endless = "SELECT sum(value % 7) FROM generate_series(1, 1000000000000)";
    let first = tokio::spawn({
        let (client, url, key) = (client.clone(), url.to_owned(), analyst.to_owned());
        async move { query(&client, &url, &key, endless, &[]).await }
    });
    wait_for(Duration::from_secs(10), || async {
        (metric(server, "imagelake_sql_queries_running").await >= 1.0).then_some(())
    })
    .await
    .expect("the first query runs");
    let (status, body) = query(client, url, analyst, "SELECT 1", &[]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");
    let (status, body) = first.await.unwrap();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(body["error"]["code"], "query_timeout");

    // A client that goes away cancels its query.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let gone = impatient
        .post(url)
        .bearer_auth(analyst)
        .json(&json!({"sql": endless}))
        .send()
        .await;
    assert!(gone.is_err(), "the client gave up");
    wait_for(Duration::from_secs(4), || async {
        let cancelled = metric(
            server,
            "imagelake_sql_queries_total{door=\"http\",outcome=\"cancelled\"}",
        )
        .await;
        (cancelled >= 1.0 && metric(server, "imagelake_sql_queries_running").await == 0.0)
            .then_some(())
    })
    .await
    .expect("the query was cancelled well before its timeout");

    // Every kind of write is refused.
    for sql in [
        "CREATE TABLE t AS SELECT 1",
        "INSERT INTO events SELECT * FROM events",
        "DROP TABLE events",
        "COPY events TO '/tmp/leak.csv'",
        "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/etc/'",
        "SET datafusion.execution.batch_size = 1",
        "SELECT 1 INTO t",
    ] {
        let (status, body) = query(client, url, analyst, sql, &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{sql}: {body}");
        assert_eq!(
            body["error"]["code"], "forbidden_statement",
            "{sql}: {body}"
        );
    }
    let (status, body) = query(client, url, analyst, "SELECT *\nFORM events", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "invalid_sql");
    assert_eq!(body["error"]["position"]["line"], 2, "{body}");
}

async fn keys_and_roles(server: &TestServer, url: &str, analyst_id: &str, analyst: &str) {
    let client = &server.client;
    let (_, ingest) = server.company_key("ingest", "feeds").await;
    let ingest = ingest.as_str();
    let (status, _) = query(client, url, ingest, "SELECT 1", &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = query(client, url, ADMIN, "SELECT count(*) FROM job_runs", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let revoked = client
        .delete(server.url(&format!("/v1/admin/keys/{analyst_id}")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    let (status, _) = query(client, url, analyst, "SELECT 1", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn time_predicates_prune_hours(server: &TestServer, url: &str, customer: &str) {
    // A file that is not Parquet in an hour no query below asks for: a query that reads that
    // hour fails, one whose time range excludes it never opens it.
    let junk = server
        .objects_dir()
        .join("lake/events/dt=2026-11-29/hour=03/junk.parquet");
    std::fs::create_dir_all(junk.parent().unwrap()).unwrap();
    std::fs::write(&junk, b"not parquet").unwrap();
    let client = &server.client;
    let (status, body) = query(client, url, ADMIN, "SELECT count(*) FROM events", &[]).await;
    assert_ne!(status, StatusCode::OK, "the junk hour is read: {body}");
    for sql in [
        "SELECT count(*) FROM events WHERE occurred_at >= TIMESTAMP '2026-11-30T00:00:00Z'",
        "SELECT count(*) FROM events WHERE occurred_at BETWEEN '2026-11-30T10:00:00Z' AND '2026-11-30T10:59:59Z' AND type = 'image.received'",
        "SELECT count(*) FROM events WHERE dt = DATE '2026-11-30'",
        "SELECT count(*) FROM events WHERE dt = '2026-11-30' AND hour = 10",
    ] {
        // For the admin, and for a customer (whose own filter is below the scan's bounds).
        for key in [ADMIN, customer] {
            let (status, body) = query(client, url, key, sql, &[]).await;
            assert_eq!(status, StatusCode::OK, "{sql}: {body}");
            assert!(body["rows"][0][0].as_u64().unwrap() > 0, "{sql}: {body}");
        }
    }
    let (status, body) = query(client, url, customer, "SELECT count(*) FROM events", &[]).await;
    assert_ne!(
        status,
        StatusCode::OK,
        "the junk hour is read for a customer too: {body}"
    );
}

/// The engine keeps the files' footers and statistics between queries; a file rewritten in
/// place (as a transform rewrites a partition) is read anew, not answered from what was kept.
async fn rewritten_files_are_read_anew(server: &TestServer, url: &str) {
    let sql = "SELECT count(*) FROM events WHERE dt = '2026-11-30' AND hour = 10";
    let count = || async {
        let (status, body) = query(&server.client, url, ADMIN, sql, &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["rows"][0][0].as_u64().unwrap()
    };
    assert!(count().await > 1, "the hour holds several events");
    let folder = object_store::path::Path::from("lake/events/dt=2026-11-30/hour=10");
    let engine = imagelake_sql::engine::Engine::new(server.state.objects.clone()).unwrap();
    engine
        .register_hours("hour", &TableDecl::events(), std::slice::from_ref(&folder))
        .await
        .unwrap();
    let (schema, rows) = engine.query("SELECT * FROM hour LIMIT 1").await.unwrap();
    let listed: Vec<_> = server.state.objects.list(Some(&folder)).collect().await;
    let files: Vec<_> = listed
        .into_iter()
        .map(|o| o.unwrap().location)
        .filter(|l| l.as_ref().ends_with(".parquet"))
        .collect();
    let (first, others) = files.split_first().expect("the hour's files");
    engine.write_parquet(first, &schema, &rows).await.unwrap();
    for other in others {
        server.state.objects.delete(other).await.unwrap();
    }
    assert_eq!(
        count().await,
        1,
        "the rewritten file is read, not its old footer"
    );
}
