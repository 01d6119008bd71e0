//! The PostgreSQL wire with real clients: psql (Debian's `postgresql-client`), psycopg 3,
//! asyncpg and SQLAlchemy (`IMAGELAKE_PG_PYTHON`, a Python with them installed by
//! `scripts/emulators.sh`), and the PostgreSQL JDBC driver (`IMAGELAKE_PG_JDBC`, Debian's jar)
//! on Java 17, against a real server on port 0 holding real photographs.
//!
//! Logins by SCRAM without TLS, MD5 and cleartext over TLS (a certificate made by `openssl`);
//! wrong passwords, revoked keys, `sslmode=require` without TLS and a bad TLS file refused;
//! a customer's key sees its own rows and tables through every client, the catalog included.

mod common;

use std::{path::Path, process::Output};

use common::{ADMIN, TestServer, corpus};
use imagelake_runtime::settings::PgAuth;
use reqwest::StatusCode;
use serde_json::Value;

/// The images uploaded today (`live.images` needs a range or a LIMIT).
const OWN: &str = "SELECT count(*) FROM live.images WHERE uploaded_at > now() - INTERVAL '1 day'";

/// A server with the wire on a free port.
async fn server(tweak: impl FnOnce(&mut imagelake_runtime::Settings)) -> TestServer {
    TestServer::with(|s| {
        s.sql.pg_listen = Some("127.0.0.1:0".parse().unwrap());
        tweak(s);
    })
    .await
}

/// A customer with its key id (the wire's user name) and key (the password).
struct Login {
    customer: String,
    user: String,
    password: String,
}

async fn customer(server: &TestServer, name: &str) -> Login {
    let (customer, password) = server.customer(name).await;
    let (status, keys) = server
        .get(ADMIN, &format!("/v1/customers/{customer}/keys"))
        .await;
    assert_eq!(status, StatusCode::OK, "{keys}");
    Login {
        customer,
        user: keys["keys"][0]["id"].as_str().unwrap().to_owned(),
        password,
    }
}

/// Uploads `n` real photographs as `login`.
async fn upload(server: &TestServer, login: &Login, photos: &[std::path::PathBuf]) {
    for path in photos {
        let (status, body) = server
            .upload(&login.password, std::fs::read(path).unwrap(), None)
            .await;
        assert!(
            status == StatusCode::CREATED || status == StatusCode::OK,
            "{body}"
        );
    }
}

/// psql with `conninfo` extras, running `sql`; verbose errors carry the SQLSTATE.
async fn psql(server: &TestServer, user: &str, password: &str, extra: &str, sql: &str) -> Output {
    psql_with(server, user, password, extra, &["-c", sql]).await
}

async fn psql_with(
    server: &TestServer,
    user: &str,
    password: &str,
    extra: &str,
    args: &[&str],
) -> Output {
    let port = server.pg_addr.expect("the wire is on").port();
    tokio::process::Command::new("psql")
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "20")
        .arg(format!(
            "host=127.0.0.1 port={port} user={user} dbname=imagelake {extra}"
        ))
        .args([
            "-X",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            "VERBOSITY=verbose",
        ])
        .args(args)
        .output()
        .await
        .expect("psql runs: install postgresql-client (scripts/emulators.sh install_pg_clients)")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn stderr(output: &Output) -> String {
    assert!(!output.status.success(), "psql should have failed");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn psql_logs_in_with_scram_and_each_key_sees_what_it_may() {
    // Failed logins come back to an address at 1 per 100 s: the budget below is the burst's.
    let server = server(|s| s.limits.auth_failures_per_second = 0.01).await;
    let a = customer(&server, "alpha").await;
    let b = customer(&server, "beta").await;
    let (analyst, analyst_key) = server.company_key("analyst", "bi").await;
    let photos = corpus();
    upload(&server, &a, &photos[..2]).await;
    upload(&server, &b, &photos[2..3]).await;

    let count = OWN;
    let own = psql(&server, &a.user, &a.password, "", count).await;
    assert_eq!(stdout(&own), "2", "a customer sees its own images");
    let own = psql(&server, &b.user, &b.password, "", count).await;
    assert_eq!(stdout(&own), "1");
    let all = psql(&server, &analyst, &analyst_key, "", count).await;
    assert_eq!(stdout(&all), "3", "an analyst sees every row");
    let all = psql(&server, "admin", ADMIN, "", count).await;
    assert_eq!(stdout(&all), "3", "so does the admin token");
    let other = psql(
        &server,
        &a.user,
        &a.password,
        "",
        &format!("{OWN} AND customer_id = '{}'", b.customer),
    )
    .await;
    assert_eq!(
        stdout(&other),
        "0",
        "another customer's rows stay out of reach"
    );

    // The catalog, as psql's \dt and \d read it, holds what the key may see.
    let tables = stdout(&psql(&server, &a.user, &a.password, "", "\\dt").await);
    assert!(tables.contains("|images|"), "{tables}");
    assert!(!tables.contains("job_runs"), "{tables}");
    let tables = stdout(&psql(&server, &analyst, &analyst_key, "", "\\dt").await);
    assert!(tables.contains("|job_runs|"), "{tables}");
    let columns = stdout(&psql(&server, &a.user, &a.password, "", "\\d images").await);
    assert!(columns.contains("image_id"), "{columns}");

    // What Grafana, Metabase, Superset, DBeaver and pgAdmin send at connect is answered, for a
    // customer's key and an analyst's; Grafana's table list is the search path's tables.
    let startup = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pg/startup.sql");
    let startup = startup.to_str().unwrap();
    for (user, password) in [(&a.user, &a.password), (&analyst, &analyst_key)] {
        let answered = stdout(&psql_with(&server, user, password, "", &["-f", startup]).await);
        assert!(answered.contains("\nimages\n"), "{answered}");
        assert!(answered.contains("PostgreSQL 16.6 on"), "{answered}");
    }

    // Refusals, each with its SQLSTATE.
    let drop = psql(&server, &a.user, &a.password, "", "DROP TABLE events").await;
    assert!(stderr(&drop).contains("42501"), "{}", stderr(&drop));
    let wrong = psql(&server, &a.user, "ilk_wrong", "", count).await;
    assert!(
        stderr(&wrong).contains("password authentication failed"),
        "{}",
        stderr(&wrong)
    );
    let nobody = psql(&server, "no-such-user", "x", "", count).await;
    assert!(stderr(&nobody).contains("password authentication failed"));
    let tls = psql(&server, &a.user, &a.password, "sslmode=require", count).await;
    assert!(
        stderr(&tls).contains("server does not support SSL"),
        "{}",
        stderr(&tls)
    );

    // A revoked key is refused at once.
    let (status, body) = server
        .send(
            server
                .client
                .delete(server.url(&format!("/v1/customers/{}/keys/{}", a.customer, a.user)))
                .bearer_auth(ADMIN),
        )
        .await;
    assert!(status.is_success(), "{body}");
    let revoked = psql(&server, &a.user, &a.password, "", count).await;
    assert!(stderr(&revoked).contains("password authentication failed"));

    // Failed logins spend the address's budget (a burst of 20), but a key issued or seen
    // working is never turned away, as at the HTTP door; anyone else is, before any lookup of
    // a password. A wrong password naming a key in use (its id is no secret) is one more
    // failure, and leaves the key working for its holder at both doors.
    let guessed = psql(&server, &analyst, "ilk_wrong", "", "SELECT 1").await;
    assert!(stderr(&guessed).contains("password authentication failed"));
    for _ in 0..25 {
        psql(
            &server,
            "01980000-0000-7000-8000-000000000000",
            "x",
            "",
            "SELECT 1",
        )
        .await;
    }
    let known = psql(&server, &analyst, &analyst_key, "", "SELECT 1").await;
    assert_eq!(stdout(&known), "1");
    let (status, body) = server.get(&analyst_key, "/v1/dashboards").await;
    assert!(
        status.is_success(),
        "the HTTP door still knows the key: {body}"
    );
    let stranger = psql(&server, "another-user", "x", "", "SELECT 1").await;
    assert!(
        stderr(&stranger).contains("too many failed logins"),
        "{}",
        stderr(&stranger)
    );
    server.stop().await;
}

/// psql reading statements from a pipe, as an open session.
struct Session {
    child: tokio::process::Child,
    input: tokio::process::ChildStdin,
    output: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl Session {
    async fn open(server: &TestServer, user: &str, password: &str) -> Self {
        let port = server.pg_addr.unwrap().port();
        let mut child = tokio::process::Command::new("psql")
            .env("PGPASSWORD", password)
            .arg(format!(
                "host=127.0.0.1 port={port} user={user} dbname=imagelake"
            ))
            .args(["-X", "-At", "-v", "ON_ERROR_STOP=1"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        use tokio::io::AsyncBufReadExt;
        let input = child.stdin.take().unwrap();
        let output = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut session = Self {
            child,
            input,
            output,
        };
        assert_eq!(session.ask("SELECT 41 + 1;").await.as_deref(), Some("42"));
        session
    }

    /// The first line of the answer, or `None` once the session has ended (or gave no answer
    /// within 10 s).
    async fn ask(&mut self, sql: &str) -> Option<String> {
        use tokio::io::AsyncWriteExt;
        self.input
            .write_all(format!("{sql}\n").as_bytes())
            .await
            .ok()?;
        let line =
            tokio::time::timeout(std::time::Duration::from_secs(10), self.output.next_line());
        line.await.ok()?.ok().flatten()
    }
}

/// A key revoked while its connection is open: the connection ends at its next statement once
/// the key is looked up again (every 10 s).
#[tokio::test]
async fn a_revoked_key_ends_its_open_connections() {
    let server = server(|_| {}).await;
    let a = customer(&server, "alpha").await;
    let mut session = Session::open(&server, &a.user, &a.password).await;
    let (status, body) = server
        .send(
            server
                .client
                .delete(server.url(&format!("/v1/customers/{}/keys/{}", a.customer, a.user)))
                .bearer_auth(ADMIN),
        )
        .await;
    assert!(status.is_success(), "{body}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    while session.ask("SELECT 1;").await.is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the revoked key's connection still answers"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let ended = session.child.wait_with_output().await.unwrap();
    let said = String::from_utf8_lossy(&ended.stderr);
    assert!(said.contains("was revoked"), "{said}");
    server.stop().await;
}

/// Past `sql.pg_max_connections`, a client with the default `sslmode=prefer` is told why.
#[tokio::test]
async fn connections_past_the_cap_are_told_why() {
    let server = server(|s| s.sql.pg_max_connections = 1).await;
    let a = customer(&server, "alpha").await;
    let _held = Session::open(&server, &a.user, &a.password).await;
    let refused = psql(&server, &a.user, &a.password, "", "SELECT 1").await;
    assert!(
        stderr(&refused).contains("sorry, too many clients already"),
        "{}",
        stderr(&refused)
    );
    server.stop().await;
}

/// The clients of Python's BI tools, as a customer: its rows only, parameters of each type,
/// binary results, prepared statements, and the inspector's tables and columns.
#[tokio::test]
async fn python_clients_query_and_inspect() {
    let python = std::env::var("IMAGELAKE_PG_PYTHON").expect(
        "IMAGELAKE_PG_PYTHON is not set: run the tests through scripts/test, which installs psycopg, asyncpg and SQLAlchemy",
    );
    let server = server(|_| {}).await;
    let a = customer(&server, "alpha").await;
    let b = customer(&server, "beta").await;
    let photos = corpus();
    upload(&server, &a, &photos[..2]).await;
    upload(&server, &b, &photos[2..3]).await;
    let port = server.pg_addr.unwrap().port().to_string();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pg/clients.py");
    let output = tokio::process::Command::new(python)
        .arg(script)
        .args(["127.0.0.1", &port, &a.user, &a.password])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_slice(&output.stdout).unwrap();
    let text = &seen["psycopg_text"];
    assert_eq!(text["own_images"], 2, "{seen}");
    assert_eq!(
        text["params"],
        serde_json::json!([
            42,
            "héllo",
            2.5,
            true,
            "2026-12-01",
            "2026-12-01T08:30:00+00:00",
            null
        ]),
        "{seen}"
    );
    assert_eq!(seen["psycopg_binary"]["rows"], 2, "{seen}");
    assert_eq!(seen["psycopg_refused"]["sqlstate"], "42501", "{seen}");
    assert_eq!(
        seen["psycopg_cancel"]["sqlstate"], "57014",
        "a cancel request stops the query: {seen}"
    );
    assert_eq!(seen["asyncpg"]["count"], 2, "{seen}");
    assert_eq!(seen["asyncpg"]["none_that_big"], 0, "{seen}");
    assert_eq!(
        seen["asyncpg"]["row"],
        serde_json::json!([42, "x"]),
        "{seen}"
    );
    let inspected = &seen["sqlalchemy"];
    let tables: Vec<&str> = inspected["tables"]
        .as_array()
        .unwrap_or_else(|| panic!("{seen}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(tables.contains(&"images"), "{seen}");
    assert!(!tables.contains(&"job_runs"), "a customer's key: {seen}");
    assert!(inspected["image_columns"]["image_id"].is_string(), "{seen}");
    assert_eq!(inspected["own_images"], 2, "{seen}");
    assert!(
        inspected["schemas"]
            .as_array()
            .is_some_and(|s| s.contains(&Value::from("public"))),
        "{seen}"
    );
    assert_eq!(inspected["server_version"], serde_json::json!([16, 6]));
    server.stop().await;
}

/// A self-signed certificate and its key for 127.0.0.1, made by `openssl`.
async fn certificate(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("pg.crt"), dir.join("pg.key"));
    let made = tokio::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .await
        .expect("openssl runs");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    (cert, key)
}

/// The PostgreSQL JDBC driver (Looker Studio's, Metabase's, DBeaver's): getTables, getColumns
/// and a prepared query, over TLS.
async fn jdbc(server: &TestServer, login: &Login) -> String {
    let jar = std::env::var("IMAGELAKE_PG_JDBC").expect(
        "IMAGELAKE_PG_JDBC is not set: run the tests through scripts/test, which installs the PostgreSQL JDBC driver",
    );
    let port = server.pg_addr.unwrap().port();
    let probe = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pg/Probe.java");
    let output = tokio::process::Command::new("java")
        .arg("-cp")
        .arg(jar)
        .arg(probe)
        .arg(format!(
            "jdbc:postgresql://127.0.0.1:{port}/imagelake?sslmode=require"
        ))
        .args([&login.user, &login.password])
        .output()
        .await
        .expect("java runs");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn md5_and_cleartext_only_over_tls() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(certs.path()).await;
    for method in [PgAuth::Md5, PgAuth::Password] {
        let server = server(|s| {
            s.sql.tls_cert = Some(cert.clone());
            s.sql.tls_key = Some(key.clone());
            s.sql.pg_auth = method;
        })
        .await;
        let a = customer(&server, "alpha").await;
        upload(&server, &a, &corpus()[..1]).await;
        let count = OWN;
        let tls = psql(&server, &a.user, &a.password, "sslmode=require", count).await;
        assert_eq!(stdout(&tls), "1", "{method:?} over TLS");
        let clear = psql(&server, &a.user, &a.password, "sslmode=disable", count).await;
        assert_eq!(stdout(&clear), "1", "SCRAM without TLS");
        let wrong = psql(&server, &a.user, "ilk_wrong", "sslmode=require", count).await;
        assert!(stderr(&wrong).contains("password authentication failed"));
        let seen = jdbc(&server, &a).await;
        assert!(seen.contains("count=1"), "{seen}");
        assert!(seen.contains("public.images"), "{seen}");
        assert!(!seen.contains("job_runs"), "{seen}");
        assert!(seen.contains("image_id:"), "{seen}");
        server.stop().await;
    }
}

#[tokio::test]
async fn a_bad_tls_file_stops_the_start() {
    common::init();
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let mut settings = imagelake_runtime::Settings {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    settings.sql.pg_listen = Some("127.0.0.1:0".parse().unwrap());
    settings.sql.tls_cert = Some(garbage.clone());
    settings.sql.tls_key = Some(garbage);
    let state = imagelake_runtime::AppState::from_settings(settings)
        .await
        .unwrap();
    let started = imagelake_server::serve::start_role(
        state,
        "127.0.0.1:0".parse().unwrap(),
        imagelake_server::serve::Role::All,
        Vec::new(),
    )
    .await;
    let error = format!("{:#}", started.err().expect("the start is refused"));
    assert!(error.contains("sql.tls_cert"), "{error}");

    let mut settings = imagelake_runtime::Settings::default();
    settings.sql.pg_auth = PgAuth::Password;
    let refused = settings.check().expect_err("cleartext without TLS");
    assert!(refused.contains("needs TLS"), "{refused}");
}
