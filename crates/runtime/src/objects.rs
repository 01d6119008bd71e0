//! Verbs on the object store that the domain repeats.

use object_store::{ObjectStore, ObjectStoreExt, path::Path};

/// Deletes `location`; an object already gone is fine, since deletes are retried after a crash
/// or raced by another replica and must converge, not fail.
pub async fn delete_if_present(
    objects: &dyn ObjectStore,
    location: &Path,
) -> object_store::Result<()> {
    match objects.delete(location).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}
