//! The metadata conformance suite on the Firestore emulator (started by `scripts/test`, found
//! through `FIRESTORE_EMULATOR_HOST`). Each check gets a project of its own, so checks run in
//! parallel on one emulator without seeing each other's documents.

use std::sync::atomic::{AtomicU32, Ordering};

use imagelake_gcp::{FirestoreConfig, FirestoreStore};

fn fresh() -> FirestoreStore {
    let _ = rustls::crypto::ring::default_provider().install_default();
    assert!(
        std::env::var("FIRESTORE_EMULATOR_HOST").is_ok(),
        "FIRESTORE_EMULATOR_HOST is not set: run the tests through scripts/test, which starts the Firestore emulator"
    );
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let project = format!(
        "conformance-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    FirestoreStore::new(FirestoreConfig::from_env(project).unwrap()).expect("firestore store")
}

imagelake_metadata::metadata_conformance!(store_only: fresh());
