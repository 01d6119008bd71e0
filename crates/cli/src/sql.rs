//! `imagelake sql`: queries over the lake, one-shot (`imagelake sql "SELECT ..."`, `-f
//! file.sql`, or SQL on stdin) or in an interactive shell with history and multi-line input
//! (a statement ends with `;`). With `--key` it asks a server (`POST /v1/sql`, as that key
//! sees the lake); without, it reads the local data dir itself with admin rights, for the
//! operator on the machine.

use std::{
    io::{IsTerminal, Write},
    path::PathBuf,
};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use imagelake_runtime::settings::{MetadataBackend, ObjectBackend};
use imagelake_sql::{
    Answer, Asker, QueryEngine, QueryError, Viewer,
    datafusion::arrow::{array::RecordBatch, ipc::reader::StreamReader},
    format::Format,
};

use crate::settings::ServeArgs;

#[derive(Args)]
pub struct SqlArgs {
    /// The statement; without it and without `-f`, SQL is read from stdin, or the shell starts
    /// when stdin is a terminal.
    sql: Option<String>,
    /// Read the statement from a file.
    #[arg(short = 'f', long = "file", conflicts_with = "sql")]
    file: Option<PathBuf>,
    /// `table` (aligned, for people), `csv`, `json` (JSON lines) or `parquet` (to redirect to
    /// a file).
    #[arg(long, value_enum, default_value = "table")]
    format: OutputFormat,
    /// An API key (analyst or customer): ask the server at `--server` as that key.
    #[arg(long, env = "IMAGELAKE_API_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Base URL of the server, with `--key`.
    #[arg(
        long,
        env = "IMAGELAKE_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,
    /// Without `--key`: the data dir and settings to read the lake from.
    #[command(flatten)]
    settings: ServeArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Table,
    Csv,
    Json,
    Parquet,
}

impl OutputFormat {
    fn format(self) -> Format {
        match self {
            Self::Table => Format::Table,
            Self::Csv => Format::Csv,
            Self::Json => Format::Ndjson,
            Self::Parquet => Format::Parquet,
        }
    }
}

/// Where queries go.
enum Target {
    Server {
        client: reqwest::Client,
        url: String,
        key: String,
    },
    Local(Box<QueryEngine>),
}

impl Target {
    async fn open(args: &SqlArgs) -> anyhow::Result<Self> {
        if let Some(key) = &args.key {
            return Ok(Self::Server {
                client: reqwest::Client::builder().build()?,
                url: format!("{}/v1/sql", args.server.trim_end_matches('/')),
                key: key.clone(),
            });
        }
        let mut settings = args.settings.settings()?;
        let local = settings.objects.backend == ObjectBackend::Local
            || settings.metadata.backend == MetadataBackend::Sqlite;
        if local && !settings.data_dir.is_dir() {
            // A mistyped path would otherwise be made, and answer every query with nothing.
            bail!(
                "no data directory at {}: name the one `imagelake serve` uses (--data-dir or IMAGELAKE_DATA_DIR)",
                settings.data_dir.display()
            );
        }
        // The operator on the machine needs no token; none is read or written for it.
        settings.admin_token = Some(imagelake_runtime::settings::Secret(
            imagelake_runtime::keys::generate_key().0,
        ));
        let state = imagelake_runtime::AppState::from_settings(settings).await?;
        let engine = QueryEngine::new(&state).await?;
        Ok(Self::Local(Box::new(engine)))
    }

    async fn query(&self, sql: &str) -> anyhow::Result<Answer> {
        match self {
            Self::Local(engine) => {
                let asker = Asker {
                    viewer: Viewer::Admin,
                    key: "local".into(),
                    door: "cli",
                };
                engine.run(&asker, sql, &[]).await.map_err(refused)
            }
            Self::Server { client, url, key } => {
                let response = client
                    .post(url)
                    .bearer_auth(key)
                    .header("accept", Format::Arrow.content_type())
                    .json(&serde_json::json!({ "sql": sql }))
                    .send()
                    .await
                    .with_context(|| format!("asking {url}"))?;
                let status = response.status();
                let truncated = response
                    .headers()
                    .get("imagelake-truncated")
                    .is_some_and(|v| v == "true");
                let body = response.bytes().await?;
                if !status.is_success() {
                    let error: serde_json::Value =
                        serde_json::from_slice(&body).unwrap_or_default();
                    let error = &error["error"];
                    let mut text = format!(
                        "{}: {}",
                        error["code"].as_str().unwrap_or(status.as_str()),
                        error["message"].as_str().unwrap_or("no message")
                    );
                    if let Some(line) = error["position"]["line"].as_u64() {
                        let column = error["position"]["column"].as_u64().unwrap_or(0);
                        text.push_str(&format!(" (line {line}, column {column})"));
                    }
                    bail!(text);
                }
                let reader = StreamReader::try_new(std::io::Cursor::new(body), None)?;
                let schema = reader.schema();
                let batches = reader.collect::<Result<Vec<RecordBatch>, _>>()?;
                let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
                Ok(Answer {
                    schema,
                    batches,
                    rows,
                    truncated,
                    held: Default::default(),
                })
            }
        }
    }
}

fn refused(e: QueryError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

pub async fn run(args: SqlArgs) -> anyhow::Result<()> {
    let target = Target::open(&args).await?;
    let format = args.format.format();
    let sql = match (&args.sql, &args.file) {
        (Some(sql), _) => sql.clone(),
        (None, Some(file)) => {
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
        }
        (None, None) if std::io::stdin().is_terminal() => return shell(&target, format).await,
        (None, None) => std::io::read_to_string(std::io::stdin())?,
    };
    let answer = target.query(&sql).await?;
    print(answer, format).await
}

/// Writes the answer to stdout; a note on stderr when rows were cut.
async fn print(answer: Answer, format: Format) -> anyhow::Result<()> {
    let (rows, truncated) = (answer.rows, answer.truncated);
    let mut out = std::io::stdout().lock();
    for piece in format.encode(answer)? {
        out.write_all(&piece?)?;
    }
    out.flush()?;
    if truncated {
        eprintln!("({rows} rows: the answer was cut at sql.max_rows)");
    }
    Ok(())
}

/// The interactive shell: statements end with `;`, `\q` quits; history in
/// `~/.imagelake_sql_history`.
async fn shell(target: &Target, format: Format) -> anyhow::Result<()> {
    use rustyline::{DefaultEditor, error::ReadlineError};
    let mut editor = DefaultEditor::new()?;
    let history =
        std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".imagelake_sql_history"));
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    eprintln!("imagelake sql: end statements with ;  \\q quits");
    let mut statement = String::new();
    loop {
        let prompt = if statement.is_empty() {
            "sql> "
        } else {
            "...> "
        };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                statement.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let trimmed = line.trim();
        if statement.is_empty() && matches!(trimmed, "\\q" | "quit" | "exit") {
            break;
        }
        if trimmed.is_empty() && statement.is_empty() {
            continue;
        }
        statement.push_str(&line);
        statement.push('\n');
        if !trimmed.ends_with(';') {
            continue;
        }
        let sql = std::mem::take(&mut statement);
        let _ = editor.add_history_entry(sql.trim());
        let started = std::time::Instant::now();
        match target.query(&sql).await {
            Ok(answer) => {
                let rows = answer.rows;
                print(answer, format).await?;
                eprintln!("{rows} rows in {:.3} s", started.elapsed().as_secs_f64());
            }
            Err(e) => eprintln!("error: {e:#}"),
        }
    }
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
    Ok(())
}

#[derive(clap::Subcommand)]
pub enum BigqueryCommand {
    /// Print `CREATE EXTERNAL TABLE` statements (Hive-partitioned, explicit schemas) for every
    /// lake table, for `bq query --use_legacy_sql=false < ddl.sql`.
    Ddl {
        /// The BigQuery dataset (`project.dataset` or `dataset`).
        #[arg(long)]
        dataset: String,
        /// The settings whose `[[lake.tables]]` are included; `--bucket` (or `objects.bucket`)
        /// names the GCS bucket the lake is in.
        #[command(flatten)]
        settings: ServeArgs,
    },
}

pub async fn bigquery(cmd: BigqueryCommand) -> anyhow::Result<()> {
    let BigqueryCommand::Ddl { dataset, settings } = cmd;
    let settings = settings.settings()?;
    let Some(bucket) = settings.objects.bucket.clone() else {
        anyhow::bail!("name the lake's bucket: --bucket, IMAGELAKE_BUCKET or objects.bucket");
    };
    let catalog = imagelake_sql::query::Catalog::new(&settings).await?;
    print!(
        "{}",
        imagelake_sql::bigquery::ddl(&catalog, &dataset, &bucket)
    );
    Ok(())
}
