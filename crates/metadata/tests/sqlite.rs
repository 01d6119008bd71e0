//! The metadata and work-queue conformance suites on SQLite files on disk (the embedded
//! default).

use imagelake_metadata::SqliteStore;

fn on_disk() -> SqliteStore {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("meta.sqlite")).expect("open sqlite");
    // The database stays open; the directory is removed when the test process exits.
    std::mem::forget(dir);
    store
}

imagelake_metadata::metadata_conformance!(on_disk());
imagelake_metadata::work_queue_conformance!(on_disk());
