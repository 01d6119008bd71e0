//! The deployment files against the binary they deploy: every Kustomize overlay renders and
//! validates offline (`scripts/check-deploy`: the Kubernetes schemas, the CRDs', the Compose
//! schema, the setup script's dry runs), and every Deployment's role, port, probes and settings
//! are what `imagelake` serves and reads.

mod common;

use std::{path::Path, process::Command};

use common::{ADMIN, kafka::brokers, spawn, temp_dir};
use serde_json::Value;

const OVERLAYS: [&str; 2] = [
    "deploy/k8s/overlays/production",
    "deploy/k8s/overlays/staging",
];

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// `scripts/check-deploy ARGS` with the checkers' Python (`install_deploy_checkers`).
fn check_deploy(args: &[&str]) -> std::process::Output {
    let python = std::env::var("IMAGELAKE_DEPLOY_PYTHON").expect(
        "IMAGELAKE_DEPLOY_PYTHON is not set: run the tests through scripts/test, which installs the deployment's checkers",
    );
    Command::new(python)
        .arg(root().join("scripts/check-deploy"))
        .args(args)
        .output()
        .expect("scripts/check-deploy runs")
}

#[test]
fn every_deployment_file_renders_and_validates() {
    let out = check_deploy(&[]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for overlay in OVERLAYS {
        assert!(said.contains(&format!("{overlay}: ")), "{said}");
    }
    for checked in [
        "valid keda.sh/v1alpha1/ScaledObject imagelake-worker",
        "valid networking.gke.io/v1/ManagedCertificate imagelake",
        "valid serving.knative.dev/v1/Service imagelake-worker",
        "deploy/compose.yaml: valid",
        "deploy/setup-gcp.sh: the dry runs",
    ] {
        assert!(said.contains(checked), "{checked}: {said}");
    }
}

/// The settings an overlay gives its pods, with the secrets' folder moved to `secrets` (which
/// holds a file for each).
fn settings_with_secrets(settings: &str, secrets: &Path) -> String {
    for name in [
        "admin-token",
        "metrics-token",
        "kafka-password",
        "pg-tls.crt",
        "pg-tls.key",
    ] {
        std::fs::write(secrets.join(name), format!("{name}-value\n")).unwrap();
    }
    settings.replace("/etc/imagelake-secrets", secrets.to_str().unwrap())
}

#[tokio::test]
async fn every_role_deployed_is_one_the_binary_serves() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    for overlay in OVERLAYS {
        let out = check_deploy(&["--deployments", overlay]);
        assert!(out.status.success(), "{out:?}");
        let deployments: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        let roles: Vec<&str> = deployments
            .iter()
            .map(|d| d["args"][0].as_str().unwrap())
            .collect();
        assert!(
            roles.contains(&"api") && roles.contains(&"worker"),
            "{roles:?}"
        );
        for deployment in &deployments {
            let name = deployment["name"].as_str().unwrap();
            let args: Vec<&str> = deployment["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            let help = Command::new(env!("CARGO_BIN_EXE_imagelake"))
                .args(&args)
                .arg("--help")
                .output()
                .unwrap();
            let help = String::from_utf8_lossy(&help.stdout);
            assert!(
                help.contains("--listen"),
                "{name}: {args:?} is no server role: {help}"
            );

            // The settings parse, their secret files are read, and they listen on the port
            // the container declares and the probes ask.
            let dir = temp_dir("deploy-settings");
            let settings = settings_with_secrets(deployment["settings"].as_str().unwrap(), &dir);
            let file = dir.join("imagelake.toml");
            std::fs::write(&file, &settings).unwrap();
            let read = Command::new(env!("CARGO_BIN_EXE_imagelake"))
                .args(["lifecycle", "--config", file.to_str().unwrap()])
                .output()
                .unwrap();
            assert!(read.status.success(), "{name}: {read:?}");
            let table: toml::Table = toml::from_str(&settings).unwrap();
            let listen: std::net::SocketAddr = table["listen"].as_str().unwrap().parse().unwrap();
            assert_eq!(
                deployment["ports"]["http"],
                listen.port(),
                "{name}: the container port is the one the settings listen on"
            );

            // The probes' paths answer on the role itself (the embedded backends here).
            let data = temp_dir("deploy-role");
            let brokers = brokers();
            let mut run = args.clone();
            run.extend(["--data-dir", data.to_str().unwrap()]);
            if matches!(args[0], "kafka-ingest" | "lake-writer") {
                run.extend(["--kafka-brokers", &brokers]);
            }
            let server = spawn(&run, &[]);
            for (probe, get) in deployment["probes"].as_object().unwrap() {
                assert_eq!(get["port"], "http", "{name}: {probe}");
                let path = get["path"].as_str().unwrap();
                let answer = client
                    .get(format!("{}{path}", server.base))
                    .send()
                    .await
                    .unwrap();
                let status = answer.status().as_u16();
                let body: Value = answer.json().await.unwrap();
                assert!(
                    status == 200 || (path == "/readyz" && status == 503),
                    "{name}: {probe} {path} answered {status}: {body}"
                );
                assert!(body["status"].is_string(), "{name}: {path}: {body}");
            }
            let metrics = get_metrics(&client, &server.base, ADMIN).await;
            assert!(metrics.contains("# EOF"), "{name}: /metrics: {metrics}");
        }
    }
}

/// `GET path` with `token` as its bearer.
async fn get_as(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    token: &str,
) -> reqwest::Response {
    client
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// `GET /metrics` with `token`, as text.
async fn get_metrics(client: &reqwest::Client, base: &str, token: &str) -> String {
    get_as(client, base, "/metrics", token)
        .await
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_metrics_token_reads_the_metrics_and_nothing_else() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = temp_dir("metrics-token");
    let secret = dir.join("metrics-token");
    std::fs::write(&secret, "scrape-only-token\n").unwrap();
    let settings = dir.join("imagelake.toml");
    std::fs::write(
        &settings,
        format!("metrics_token_file = {:?}\n", secret.to_str().unwrap()),
    )
    .unwrap();
    let server = spawn(
        &[
            "serve",
            "--config",
            settings.to_str().unwrap(),
            "--data-dir",
            dir.to_str().unwrap(),
        ],
        &[],
    );
    let client = reqwest::Client::new();
    let scraped = get_metrics(&client, &server.base, "scrape-only-token").await;
    assert!(
        scraped.contains("# TYPE imagelake_upload_bytes counter"),
        "{scraped}"
    );
    let admin = get_metrics(&client, &server.base, ADMIN).await;
    assert!(admin.contains("# EOF"), "the admin token still reads them");
    for path in ["/v1/admin/dead-letters", "/v1/customers", "/v1/images"] {
        let refused = get_as(&client, &server.base, path, "scrape-only-token").await;
        assert_eq!(refused.status(), 401, "{path} with the metrics token");
    }
    let wrong = get_as(&client, &server.base, "/metrics", "scrape-only-tokem").await;
    assert_eq!(wrong.status(), 401);
}
