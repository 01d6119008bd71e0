//! What the lake's tests share.

#![allow(dead_code)]

use std::sync::{
    Arc,
    atomic::{AtomicI64, AtomicU64, Ordering},
};

use async_trait::async_trait;
use futures::stream::BoxStream;
use imagelake_core::{ManualClock, Timestamp};
use imagelake_metadata::SqliteStore;
use imagelake_runtime::{AppState, Settings, keys::AdminToken};
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result, local::LocalFileSystem,
    path::Path,
};

/// Local files that refuse puts once `allowed` reaches zero (negative: never), and count them.
#[derive(Debug)]
pub struct Flaky {
    pub inner: LocalFileSystem,
    pub allowed: AtomicI64,
    pub puts: AtomicU64,
    /// When set, only puts under paths containing it count and fail.
    pub only: std::sync::Mutex<Option<String>>,
}

impl std::fmt::Display for Flaky {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Flaky({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Flaky {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let counted = self
            .only
            .lock()
            .unwrap()
            .as_ref()
            .is_none_or(|only| location.as_ref().contains(only.as_str()));
        if counted && self.allowed.fetch_sub(1, Ordering::SeqCst) == 0 {
            self.allowed.store(0, Ordering::SeqCst);
            return Err(object_store::Error::Generic {
                store: "flaky",
                source: "the process died here".into(),
            });
        }
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

impl Flaky {
    pub fn new(root: &std::path::Path) -> Self {
        std::fs::create_dir_all(root).unwrap();
        Self {
            inner: LocalFileSystem::new_with_prefix(root).unwrap(),
            allowed: AtomicI64::new(-1),
            puts: AtomicU64::new(0),
            only: std::sync::Mutex::new(None),
        }
    }

    /// Lets `n` more puts through, then refuses them (negative: never).
    pub fn allow(&self, n: i64) {
        self.allowed.store(n, Ordering::SeqCst);
    }
}

/// A lake on `objects` under `dir`, on a clock stopped at `start`, with a SQLite metadata store.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub clock: Arc<ManualClock>,
    pub objects: Arc<Flaky>,
    pub state: AppState,
}

pub fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

impl Fixture {
    pub fn assemble(
        dir: tempfile::TempDir,
        objects: Arc<Flaky>,
        settings: Settings,
        start: &str,
    ) -> Self {
        let sqlite = SqliteStore::open(&dir.path().join("metadata.sqlite")).unwrap();
        let clock = Arc::new(ManualClock::new(at(start)));
        let state = AppState::assemble(
            settings,
            objects.clone(),
            Arc::new(sqlite.clone()),
            Arc::new(sqlite),
            clock.clone(),
            AdminToken::from_secret("admin"),
        );
        Self {
            dir,
            clock,
            objects,
            state,
        }
    }
}
