//! Typed settings with safe defaults. The binary layers a TOML file, `IMAGELAKE_*` variables and
//! flags over [`Settings::default`].

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use imagelake_core::duration::HumanDuration;
use serde::Deserialize;

/// A secret that never prints.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Objects, the SQLite database and the generated admin token live here.
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// How long images and their metadata are kept.
    pub retention: HumanDuration,
    /// How often the sweeper deletes expired images.
    pub sweep_interval: HumanDuration,
    /// Taken from `IMAGELAKE_ADMIN_TOKEN`; generated into `data_dir` when absent.
    pub admin_token: Option<Secret>,
    pub limits: Limits,
    pub processing: Processing,
    pub objects: Objects,
}

/// Where originals and renditions are kept.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Objects {
    pub backend: ObjectBackend,
    /// The GCS bucket, for `backend = "gcs"`.
    pub bucket: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ObjectBackend {
    /// Files under `data_dir/objects`.
    #[default]
    Local,
    /// A GCS bucket through the JSON API (the emulator when `STORAGE_EMULATOR_HOST` is set).
    Gcs,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest accepted request body in bytes.
    pub max_body_bytes: u64,
    /// Largest accepted image in pixels (width x height), checked from the header.
    pub max_pixels: u64,
    /// Upload bodies held in memory at once, in bytes; further uploads wait for room. This and
    /// the worker count bound the process's memory, whatever the number of clients.
    pub max_inflight_upload_bytes: u64,
    /// Sustained requests per second allowed per API key.
    pub requests_per_second: f64,
    /// Requests a key may make in a burst above the sustained rate.
    pub burst: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Processing {
    /// Images processed at once; 0 means one per CPU core.
    pub workers: usize,
    /// Attempts before a job moves to the dead letters.
    pub max_attempts: u32,
    /// First retry delay; doubles with each attempt up to five minutes.
    pub retry_backoff: HumanDurationMs,
    /// How long a worker owns a job before it is handed out again.
    pub lease: HumanDuration,
    /// Keep GPS positions in the EXIF facts (they never reach renditions).
    pub keep_gps: bool,
}

/// A duration in milliseconds, for settings that tests want below a second.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(transparent)]
pub struct HumanDurationMs(pub u64);

impl HumanDurationMs {
    pub fn get(self) -> Duration {
        Duration::from_millis(self.0)
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("imagelake-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            retention: HumanDuration(Duration::from_secs(7 * 86_400)),
            sweep_interval: HumanDuration(Duration::from_secs(300)),
            admin_token: None,
            limits: Limits::default(),
            processing: Processing::default(),
            objects: Objects::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 50 * 1024 * 1024,
            max_pixels: 100_000_000,
            max_inflight_upload_bytes: 256 * 1024 * 1024,
            requests_per_second: 20.0,
            burst: 100,
        }
    }
}

impl Default for Processing {
    fn default() -> Self {
        Self {
            workers: 0,
            max_attempts: 5,
            retry_backoff: HumanDurationMs(1_000),
            lease: HumanDuration(Duration::from_secs(300)),
            keep_gps: false,
        }
    }
}

impl Processing {
    /// The worker count with 0 resolved to the number of cores.
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            return self.workers;
        }
        std::thread::available_parallelism().map_or(2, |n| n.get())
    }
}
