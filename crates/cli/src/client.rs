//! Commands that talk to a running server over its HTTP API.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use sha2::{Digest, Sha256};

#[derive(Args, Clone)]
pub struct ServerArgs {
    /// Base URL of the imagelake server.
    #[arg(
        long,
        env = "IMAGELAKE_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,
}

/// What a command acting as the admin needs.
#[derive(Args, Clone)]
pub struct AdminArgs {
    /// The admin token (its file is named in the server log on first start).
    #[arg(long, env = "IMAGELAKE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: String,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Subcommand)]
pub enum CustomersCommand {
    /// Create a customer and print its API key (shown once).
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        plan: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a company key with a role and print it (shown once): `ingest` posts lake
    /// records, `analyst` queries the lake.
    Create {
        #[arg(long, value_parser = ["ingest", "analyst"])]
        role: String,
        /// Who uses the key (`billing`).
        #[arg(long)]
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List the company keys (never their secrets).
    List {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Revoke a company key at once.
    Revoke {
        key_id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Args)]
pub struct UploadArgs {
    /// Files and folders (searched recursively) to upload.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// The customer's API key.
    #[arg(long, env = "IMAGELAKE_API_KEY", hide_env_values = true)]
    key: String,
    /// Uploads in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    #[command(flatten)]
    server: ServerArgs,
}

fn http() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()?)
}

fn error_text(body: &Value) -> String {
    let code = body["error"]["code"].as_str().unwrap_or("error");
    let message = body["error"]["message"].as_str().unwrap_or("(no message)");
    format!("{code}: {message}")
}

/// Calls an admin endpoint; the answer's JSON, or the server's error as the error.
async fn admin_call(
    admin: &AdminArgs,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let base = admin.server.server.trim_end_matches('/');
    let mut request = http()?
        .request(method, format!("{base}{path}"))
        .bearer_auth(&admin.admin_token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach {base}"))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        bail!("{status}: {}", error_text(&body));
    }
    Ok(body)
}

pub async fn customers(cmd: CustomersCommand) -> anyhow::Result<()> {
    let CustomersCommand::Create {
        name,
        email,
        plan,
        admin,
    } = cmd;
    let body = serde_json::json!({"name": name, "email": email, "plan": plan});
    let created = admin_call(&admin, reqwest::Method::POST, "/v1/customers", Some(body)).await?;
    println!(
        "customer id: {}",
        created["id"].as_str().unwrap_or_default()
    );
    println!(
        "api key:     {}",
        created["api_key"].as_str().unwrap_or_default()
    );
    println!("(the key is shown only now; keep it somewhere safe)");
    Ok(())
}

pub async fn keys(cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Create { role, name, admin } => {
            let body = serde_json::json!({"role": role, "name": name});
            let created =
                admin_call(&admin, reqwest::Method::POST, "/v1/admin/keys", Some(body)).await?;
            let field = |f: &str| created[f].as_str().unwrap_or_default().to_owned();
            println!("key id:  {}", field("key_id"));
            println!("role:    {}", field("role"));
            println!("api key: {}", field("api_key"));
            println!("(the key is shown only now; keep it somewhere safe)");
        }
        KeysCommand::List { admin } => {
            let listed = admin_call(&admin, reqwest::Method::GET, "/v1/admin/keys", None).await?;
            for key in listed["keys"].as_array().into_iter().flatten() {
                println!("{key}");
            }
        }
        KeysCommand::Revoke { key_id, admin } => {
            let path = format!("/v1/admin/keys/{key_id}");
            admin_call(&admin, reqwest::Method::DELETE, &path, None).await?;
            println!("revoked {key_id}");
        }
    }
    Ok(())
}

/// Every regular file under the given paths, sorted for a stable order. Folders are searched
/// recursively, without their hidden entries. Inside a folder a symbolic link is followed to a
/// file but never to a folder, so a link cycle cannot trap the search, and a dangling link is
/// passed over; a path named on the command line that does not exist is an error.
pub fn collect_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut folders = Vec::new();
    for path in paths {
        let meta =
            std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        if meta.is_dir() {
            folders.push(path.clone());
        } else if meta.is_file() {
            files.push(path.clone());
        }
    }
    while let Some(folder) = folders.pop() {
        let entries = std::fs::read_dir(&folder)
            .with_context(|| format!("cannot read {}", folder.display()))?;
        for entry in entries {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let kind = entry.file_type()?;
            if kind.is_dir() {
                folders.push(entry.path());
            } else if kind.is_file() || (kind.is_symlink() && entry.path().is_file()) {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

/// A progress bar over the total size of `files`.
pub fn byte_progress(files: &[PathBuf]) -> anyhow::Result<ProgressBar> {
    let total: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let bar = ProgressBar::new(total);
    bar.set_style(ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}",
    )?);
    Ok(bar)
}

#[derive(Default)]
struct Summary {
    stored: usize,
    duplicates: usize,
    refused: Vec<(PathBuf, String)>,
}

enum Outcome {
    Stored,
    Duplicate,
    Refused(String),
}

pub async fn upload(args: UploadArgs) -> anyhow::Result<()> {
    let files = collect_files(&args.paths)?;
    let bar = byte_progress(&files)?;
    let client = http()?;
    let base = Arc::new(format!(
        "{}/v1/images",
        args.server.server.trim_end_matches('/')
    ));
    let key = Arc::new(args.key);
    let outcomes: Vec<(PathBuf, Outcome)> = futures::stream::iter(files)
        .map(|file| {
            let (client, base, key, bar) = (client.clone(), base.clone(), key.clone(), bar.clone());
            async move {
                let outcome = upload_one(&client, &base, &key, &file)
                    .await
                    .unwrap_or_else(|e| Outcome::Refused(format!("{e:#}")));
                bar.inc(std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0));
                (file, outcome)
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    bar.finish_and_clear();
    let mut summary = Summary::default();
    for (file, outcome) in outcomes {
        match outcome {
            Outcome::Stored => summary.stored += 1,
            Outcome::Duplicate => summary.duplicates += 1,
            Outcome::Refused(why) => summary.refused.push((file, why)),
        }
    }
    println!(
        "stored: {}, duplicates: {}, refused: {}",
        summary.stored,
        summary.duplicates,
        summary.refused.len()
    );
    for (file, why) in &summary.refused {
        println!("  refused {}: {why}", file.display());
    }
    // A script that uploads learns from the exit status that something was not taken.
    anyhow::ensure!(
        summary.refused.is_empty(),
        "{} of {} files were refused",
        summary.refused.len(),
        summary.refused.len() + summary.stored + summary.duplicates
    );
    Ok(())
}

async fn upload_one(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    file: &Path,
) -> anyhow::Result<Outcome> {
    let bytes = tokio::fs::read(file).await?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // The same file retried (a dropped connection, a second run) is recognised by the server.
    let idempotency_key = hex::encode(Sha256::digest([bytes.as_slice(), name.as_bytes()].concat()));
    let mut attempt = 0;
    loop {
        attempt += 1;
        let sent = client
            .post(url)
            .query(&[("filename", &name)])
            .bearer_auth(key)
            .header("Idempotency-Key", &idempotency_key)
            .body(bytes.clone())
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) if attempt < 3 => {
                tracing::debug!(error = %e, "retrying upload");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let status = response.status();
        if status.as_u16() == 429 && attempt < 10 {
            let wait = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            tokio::time::sleep(Duration::from_secs(wait)).await;
            continue;
        }
        let replayed = response.headers().contains_key("idempotent-replayed");
        let body: Value = response.json().await.unwrap_or_default();
        return Ok(match status.as_u16() {
            _ if replayed && status.is_success() => Outcome::Duplicate,
            201 => Outcome::Stored,
            200 if body["duplicate"] == Value::Bool(true) => Outcome::Duplicate,
            200 => Outcome::Stored,
            _ => Outcome::Refused(error_text(&body)),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_searched_without_following_links_to_folders() {
        let root = tempfile::tempdir().unwrap();
        let top = root.path().join("photos");
        std::fs::create_dir_all(top.join("sub")).unwrap();
        for file in ["a.jpg", "sub/b.png", ".hidden.jpg", "sub/.DS_Store"] {
            std::fs::write(top.join(file), b"x").unwrap();
        }
        let outside = root.path().join("outside.jpg");
        std::fs::write(&outside, b"x").unwrap();
        std::os::unix::fs::symlink(&outside, top.join("linked.jpg")).unwrap();
        std::os::unix::fs::symlink(&top, top.join("sub/cycle")).unwrap();
        std::os::unix::fs::symlink(root.path().join("gone"), top.join("dangling.jpg")).unwrap();

        let found = collect_files(&[top.clone(), top.join("a.jpg")]).unwrap();
        let names: Vec<_> = found
            .iter()
            .map(|p| p.strip_prefix(&top).unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["a.jpg", "linked.jpg", "sub/b.png"]);
        let missing = collect_files(&[top.join("nope")]).unwrap_err();
        assert!(
            format!("{missing:#}").contains("cannot read"),
            "{missing:#}"
        );
    }
}
