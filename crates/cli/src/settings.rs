//! The settings every command that runs the system reads: defaults, then the TOML file
//! (`--config`), then `IMAGELAKE_*` environment variables and flags (a flag wins over its
//! variable); and `lifecycle`, which prints the bucket rule they imply.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context;
use clap::{Args, ValueEnum};
use imagelake_core::duration::HumanDuration;
use imagelake_runtime::{
    Settings,
    settings::{HumanDurationMs, Secret},
};

#[derive(Args)]
pub struct ServeArgs {
    /// TOML file with settings (see imagelake.example.toml).
    #[arg(long, env = "IMAGELAKE_CONFIG")]
    config: Option<PathBuf>,
    /// Where objects, the metadata database and the generated admin token live.
    #[arg(long, env = "IMAGELAKE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "IMAGELAKE_LISTEN")]
    listen: Option<SocketAddr>,
    /// How long images and metadata are kept (e.g. 7d, 12h, 30s).
    #[arg(long, env = "IMAGELAKE_RETENTION")]
    retention: Option<HumanDuration>,
    /// How often expired images are deleted.
    #[arg(long, env = "IMAGELAKE_SWEEP_INTERVAL")]
    sweep_interval: Option<HumanDuration>,
    /// Images processed at once (default: one per core).
    #[arg(long, env = "IMAGELAKE_WORKERS")]
    workers: Option<usize>,
    /// Largest request body in bytes (default 50 MiB).
    #[arg(long, env = "IMAGELAKE_MAX_BODY_BYTES")]
    max_body_bytes: Option<u64>,
    /// Largest image in pixels (default 100 million).
    #[arg(long, env = "IMAGELAKE_MAX_PIXELS")]
    max_pixels: Option<u64>,
    /// Upload bodies held in memory at once, in bytes (default 256 MiB); more uploads wait.
    #[arg(long, env = "IMAGELAKE_MAX_INFLIGHT_UPLOAD_BYTES")]
    max_inflight_upload_bytes: Option<u64>,
    /// Upload bodies one API key may hold in memory at once, in bytes (default: a quarter of
    /// --max-inflight-upload-bytes, at least --max-body-bytes).
    #[arg(long, env = "IMAGELAKE_MAX_INFLIGHT_UPLOAD_BYTES_PER_KEY")]
    max_inflight_upload_bytes_per_key: Option<u64>,
    /// Memory the workers may use at once to decode images, in bytes (default 512 MiB); an
    /// image that needs more is refused with decode_limit_exceeded.
    #[arg(long, env = "IMAGELAKE_MAX_DECODE_BYTES")]
    max_decode_bytes: Option<u64>,
    /// Longest time to receive a request head, and longest idle keep-alive (default 30s).
    #[arg(long, env = "IMAGELAKE_HEADER_READ_TIMEOUT")]
    header_read_timeout: Option<HumanDuration>,
    /// Longest wait for the next byte of a request body before 408 (default 30s).
    #[arg(long, env = "IMAGELAKE_BODY_IDLE_TIMEOUT")]
    body_idle_timeout: Option<HumanDuration>,
    /// Longest time for a whole request body before 408 (default 10m).
    #[arg(long, env = "IMAGELAKE_BODY_TIMEOUT")]
    body_timeout: Option<HumanDuration>,
    /// Failed authentications per second allowed per client address (default 1).
    #[arg(long, env = "IMAGELAKE_AUTH_FAILURE_RATE")]
    auth_failure_rate: Option<f64>,
    /// Burst of failed authentications per client address (default 20).
    #[arg(long, env = "IMAGELAKE_AUTH_FAILURE_BURST")]
    auth_failure_burst: Option<u32>,
    /// Proxies whose X-Forwarded-For is believed: addresses or CIDR ranges, comma-separated.
    #[arg(long, env = "IMAGELAKE_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Option<Vec<String>>,
    /// Sustained requests per second per API key (default 20).
    #[arg(long, env = "IMAGELAKE_RATE_LIMIT")]
    rate_limit: Option<f64>,
    /// Burst of requests per API key above the sustained rate (default 100).
    #[arg(long, env = "IMAGELAKE_RATE_BURST")]
    rate_burst: Option<u32>,
    /// Attempts before a processing job goes to the dead letters (default 5).
    #[arg(long, env = "IMAGELAKE_MAX_ATTEMPTS")]
    max_attempts: Option<u32>,
    /// First retry delay in milliseconds, doubling per attempt (default 1000).
    #[arg(long, env = "IMAGELAKE_RETRY_BACKOFF_MS")]
    retry_backoff_ms: Option<u64>,
    /// The Google Cloud project of Firestore and Pub/Sub (see gcp.toml).
    #[arg(long, env = "IMAGELAKE_GCP_PROJECT")]
    gcp_project: Option<String>,
    /// The GCS bucket, for objects.backend = "gcs".
    #[arg(long, env = "IMAGELAKE_BUCKET")]
    bucket: Option<String>,
    /// Kafka brokers of the image stream (`host:port,...`); the stream is off without them.
    #[arg(long, env = "IMAGELAKE_KAFKA_BROKERS")]
    kafka_brokers: Option<String>,
    /// Address of the PostgreSQL wire (e.g. 127.0.0.1:5432); off unless set.
    #[arg(long, env = "IMAGELAKE_PG_LISTEN")]
    pg_listen: Option<SocketAddr>,
    /// Keep GPS positions in image records (never in renditions).
    #[arg(long, env = "IMAGELAKE_KEEP_GPS")]
    keep_gps: Option<bool>,
    /// How long a web app sign-in lasts.
    #[arg(long, env = "IMAGELAKE_SESSION_TTL")]
    session_ttl: Option<HumanDuration>,
    /// Mark the session cookie `Secure` (browsers reach the app over HTTPS).
    #[arg(long, env = "IMAGELAKE_SECURE_COOKIES")]
    secure_cookies: Option<bool>,
    /// Pages send large files straight to the bucket (signed URLs; needs the bucket's CORS rule).
    #[arg(long, env = "IMAGELAKE_DIRECT_UPLOADS")]
    direct_uploads: Option<bool>,
    /// A folder of dashboard files (`*.toml`) shown beside the embedded ones.
    #[arg(long, env = "IMAGELAKE_DASHBOARDS_DIR")]
    dashboards_dir: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "IMAGELAKE_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl ServeArgs {
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let mut s = file_settings(self.config.as_deref())?;
        macro_rules! set {
            ($field:expr, $flag:expr) => {
                if let Some(v) = $flag.clone() {
                    $field = v;
                }
            };
        }
        set!(s.data_dir, self.data_dir);
        set!(s.listen, self.listen);
        set!(s.retention, self.retention);
        set!(s.sweep_interval, self.sweep_interval);
        set!(s.processing.workers, self.workers);
        set!(s.limits.max_body_bytes, self.max_body_bytes);
        set!(s.limits.max_pixels, self.max_pixels);
        set!(
            s.limits.max_inflight_upload_bytes,
            self.max_inflight_upload_bytes
        );
        if self.max_inflight_upload_bytes_per_key.is_some() {
            s.limits.max_inflight_upload_bytes_per_key = self.max_inflight_upload_bytes_per_key;
        }
        set!(s.limits.max_decode_bytes, self.max_decode_bytes);
        set!(s.limits.header_read_timeout, self.header_read_timeout);
        set!(s.limits.body_idle_timeout, self.body_idle_timeout);
        set!(s.limits.body_timeout, self.body_timeout);
        set!(s.limits.auth_failures_per_second, self.auth_failure_rate);
        set!(s.limits.auth_failure_burst, self.auth_failure_burst);
        set!(s.trusted_proxies, self.trusted_proxies);
        set!(s.limits.requests_per_second, self.rate_limit);
        set!(s.limits.burst, self.rate_burst);
        set!(s.processing.max_attempts, self.max_attempts);
        set!(s.processing.keep_gps, self.keep_gps);
        set!(s.web.session_ttl, self.session_ttl);
        set!(s.web.secure_cookies, self.secure_cookies);
        set!(s.web.direct_uploads, self.direct_uploads);
        if self.dashboards_dir.is_some() {
            s.web.dashboards_dir.clone_from(&self.dashboards_dir);
        }
        if self.pg_listen.is_some() {
            s.sql.pg_listen = self.pg_listen;
        }
        if self.gcp_project.is_some() {
            s.gcp.project.clone_from(&self.gcp_project);
        }
        if self.bucket.is_some() {
            s.objects.bucket.clone_from(&self.bucket);
        }
        if self.kafka_brokers.is_some() {
            s.kafka.brokers.clone_from(&self.kafka_brokers);
        }
        if let Some(ms) = self.retry_backoff_ms {
            s.processing.retry_backoff = HumanDurationMs(ms);
        }
        Ok(s)
    }
}

/// The defaults, the TOML file over them, the tokens' variables (`IMAGELAKE_ADMIN_TOKEN`,
/// `IMAGELAKE_METRICS_TOKEN`), then the secrets the `*_file` settings name. Where
/// neither sets `listen` and a platform names the port in `PORT` (Cloud Run, and the container
/// image's default), the server listens on that port of every address.
pub fn file_settings(path: Option<&std::path::Path>) -> anyhow::Result<Settings> {
    let (mut settings, listens) = match path {
        None => (Settings::default(), false),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let parse = || format!("parsing {}", path.display());
            let table: toml::Table = toml::from_str(&text).with_context(parse)?;
            let settings: Settings = toml::from_str(&text).with_context(parse)?;
            (settings, table.contains_key("listen"))
        }
    };
    if let Some(port) = platform_port()?
        && !listens
    {
        settings.listen = SocketAddr::from(([0, 0, 0, 0], port));
    }
    for (variable, token) in [
        ("IMAGELAKE_ADMIN_TOKEN", &mut settings.admin_token),
        ("IMAGELAKE_METRICS_TOKEN", &mut settings.metrics_token),
    ] {
        if let Ok(value) = std::env::var(variable)
            && !value.trim().is_empty()
        {
            *token = Some(Secret(value.trim().to_owned()));
        }
    }
    settings.read_secret_files().map_err(anyhow::Error::msg)?;
    Ok(settings)
}

/// `PORT`, when set.
fn platform_port() -> anyhow::Result<Option<u16>> {
    match std::env::var("PORT") {
        Ok(port) if !port.trim().is_empty() => port
            .trim()
            .parse()
            .map(Some)
            .with_context(|| format!("PORT={port:?} is not a port number")),
        _ => Ok(None),
    }
}

/// Prints the bucket lifecycle rule for the configured retention.
pub fn lifecycle(args: ServeArgs) -> anyhow::Result<()> {
    let settings = args.settings()?;
    println!(
        "{}",
        serde_json::to_string_pretty(&settings.lifecycle_rule())?
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_is_the_defaults() {
        let example: Settings = toml::from_str(include_str!("../../../imagelake.example.toml"))
            .expect("example parses");
        let defaults = Settings::default();
        assert_eq!(example.retention, defaults.retention);
        assert_eq!(example.sweep_interval, defaults.sweep_interval);
        assert_eq!(example.listen, defaults.listen);
        assert_eq!(example.limits, defaults.limits);
        assert_eq!(example.web, defaults.web);
        assert_eq!(example.trusted_proxies, defaults.trusted_proxies);
        assert_eq!(
            example.processing.max_attempts,
            defaults.processing.max_attempts
        );
        assert_eq!(example.objects, defaults.objects);
        assert_eq!(example.metadata, defaults.metadata);
        assert_eq!(example.queue, defaults.queue);
        assert_eq!(example.push, defaults.push);
        assert_eq!(example.gcp, defaults.gcp);
        assert_eq!(example.kafka, defaults.kafka);
        assert_eq!(example.lake, defaults.lake);
        assert_eq!(example.sql, defaults.sql);
        let gcp: Settings =
            toml::from_str(include_str!("../../../gcp.toml")).expect("gcp.toml parses");
        assert_eq!(gcp.check(), Ok(()), "gcp.toml is a working combination");
        assert!(gcp.work_from_notifications());
        let shipped: serde_json::Value =
            serde_json::from_str(include_str!("../../../deploy/lifecycle.json")).unwrap();
        assert_eq!(
            shipped,
            gcp.lifecycle_rule(),
            "deploy/lifecycle.json is gcp.toml's rule"
        );
        let short = Settings {
            retention: HumanDuration(std::time::Duration::from_secs(36 * 3600)),
            ..Settings::default()
        };
        assert_eq!(short.lifecycle_rule()["rule"][0]["condition"]["age"], 3);
        assert_eq!(short.lifecycle_rule()["rule"][1]["condition"]["age"], 3);
        let long_lake = Settings {
            lake: imagelake_runtime::settings::Lake {
                retention: Some(HumanDuration(std::time::Duration::from_secs(30 * 86_400))),
                ..Default::default()
            },
            ..Settings::default()
        };
        let rules = long_lake.lifecycle_rule();
        assert_eq!(rules["rule"][0]["condition"]["age"], 8);
        assert_eq!(
            rules["rule"][0]["condition"]["matchesPrefix"],
            serde_json::json!(["originals/", "renditions/", "claims/"])
        );
        assert_eq!(rules["rule"][1]["condition"]["age"], 31);
        assert_eq!(
            rules["rule"][1]["condition"]["matchesPrefix"],
            serde_json::json!(["lake/"])
        );
        for bad in [
            "[metadata]\nbackend = \"firestore\"\n[gcp]\nproject = \"p\"",
            "[queue]\nbackend = \"pubsub\"\n[gcp]\nproject = \"p\"",
            "[objects]\nbackend = \"gcs\"",
            "[objects]\nbackend = \"gcs\"\nbucket = \"b\"\n[queue]\nbackend = \"pubsub\"",
            "[push]\nenabled = true",
            "[queue]\npull = false",
            "[kafka]\nevents_topic = \"\"",
            "[kafka]\nimages_topic = \"images of today\"",
            "[kafka]\nevents_topic = \"imagelake.images\"",
        ] {
            let settings: Settings = toml::from_str(bad).unwrap();
            assert!(settings.check().is_err(), "{bad}");
        }
        assert!(
            toml::from_str::<Settings>("retention = \"7 days\"").is_err(),
            "bad durations are refused"
        );
        assert!(
            toml::from_str::<Settings>("colour = 1").is_err(),
            "unknown settings are refused"
        );
    }
}
