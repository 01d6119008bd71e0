//! One object-store conformance suite (the `object_store` crate's own integration tests) run
//! against the embedded local store and against `GcsJsonStore` on the GCS emulator.
//!
//! The emulator is started by `scripts/emulators` (which `scripts/test` runs) and found through
//! `STORAGE_EMULATOR_HOST`, Google's convention; without it these tests fail and say so.

use std::sync::atomic::{AtomicU32, Ordering};

use imagelake_gcp::{GcsConfig, GcsJsonStore};
use object_store::{DynObjectStore, ObjectStore, integration::*, local::LocalFileSystem};

/// A new empty bucket on the emulator for each test, so tests run in parallel.
async fn emulator_bucket() -> GcsJsonStore {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let host = std::env::var("STORAGE_EMULATOR_HOST")
        .expect("STORAGE_EMULATOR_HOST is not set: run the tests through scripts/test, which starts the GCS emulator");
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let bucket = format!(
        "conformance-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let created = reqwest::Client::new()
        .post(format!("http://{host}/storage/v1/b?project=imagelake-test"))
        // Versioning keeps old generations, which the conditional-read suite reads back.
        .json(&serde_json::json!({"name": bucket, "versioning": {"enabled": true}}))
        .send()
        .await
        .expect("the GCS emulator answers");
    assert!(
        created.status().is_success(),
        "creating bucket {bucket}: {}",
        created.status()
    );
    GcsJsonStore::new(GcsConfig::from_env(bucket).unwrap()).expect("store")
}

fn local() -> (tempfile::TempDir, LocalFileSystem) {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
    (dir, store)
}

macro_rules! on_both {
    ($name:ident, |$store:ident| $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn gcs_emulator() {
                let $store: &DynObjectStore = &emulator_bucket().await;
                $body;
            }

            #[tokio::test]
            async fn local_files() {
                let (_dir, store) = local();
                let $store: &DynObjectStore = &store;
                $body;
            }
        }
    };
}

on_both!(put_get_delete_and_list, |store| put_get_delete_list(store)
    .await);
on_both!(conditional_gets, |store| get_opts(store).await);
on_both!(streamed_reads, |store| stream_get(store).await);
on_both!(directory_listing, |store| list_uses_directories_correctly(
    store
)
.await);
on_both!(delimited_listing, |store| list_with_delimiter(store).await);
on_both!(missing_objects, |store| assert!(matches!(
    get_nonexistent_object(store, None).await,
    Err(object_store::Error::NotFound { .. })
)));
on_both!(copy_and_rename, |store| rename_and_copy(store).await);
on_both!(copy_to_missing, |store| copy_rename_nonexistent_object(
    store
)
.await);

#[tokio::test]
async fn gcs_create_only_and_conditional_updates() {
    put_opts(&emulator_bucket().await, true).await;
}

#[tokio::test]
async fn gcs_attributes_round_trip() {
    put_get_attributes(&emulator_bucket().await).await;
}

// `copy_if_not_exists` is not run on the emulator: it sends `copyTo` with
// `ifGenerationMatch=0`, which real GCS honours and fake-gcs-server 1.54 ignores (it also
// ignores it on `rewriteTo` and media uploads; multipart uploads honour it, see above).

#[tokio::test]
async fn gcs_large_multipart_write_in_chunks() {
    use object_store::{ObjectStoreExt, WriteMultipart};
    let store = emulator_bucket().await;
    let path = object_store::path::Path::from("big/object");
    let data: Vec<u8> = (0..20 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut writer = WriteMultipart::new(store.put_multipart(&path).await.unwrap());
    for chunk in data.chunks(3 * 1024 * 1024 + 7) {
        writer.write(chunk);
    }
    writer.finish().await.unwrap();
    let read = store.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(read.len(), data.len());
    assert!(
        read.as_ref() == data.as_slice(),
        "the object reads back byte for byte"
    );
    let _ = store.delete(&path).await;
    let _: &dyn ObjectStore = &store;
}
