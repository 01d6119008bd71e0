//! The whole image path with originals and renditions in a GCS bucket (the emulator started by
//! `scripts/test`, found through `STORAGE_EMULATOR_HOST`), through `GcsJsonStore`.

mod common;

use std::sync::Arc;

use common::TestServer;
use futures::TryStreamExt;
use imagelake_gcp::{GcsConfig, GcsJsonStore};
use imagelake_imaging::fixtures;
use object_store::ObjectStore;
use reqwest::StatusCode;

#[tokio::test]
async fn images_live_in_the_bucket() {
    common::init();
    let host = std::env::var("STORAGE_EMULATOR_HOST")
        .expect("STORAGE_EMULATOR_HOST is not set: run the tests through scripts/test, which starts the GCS emulator");
    let bucket = format!("images-{}", std::process::id());
    let created = reqwest::Client::new()
        .post(format!("http://{host}/storage/v1/b?project=imagelake-test"))
        .json(&serde_json::json!({"name": bucket}))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success());
    let store: Arc<dyn ObjectStore> =
        Arc::new(GcsJsonStore::new(GcsConfig::from_env(&bucket).unwrap()).unwrap());
    let server = TestServer::with_objects(store.clone()).await;
    let (customer, key) = server.customer("cloudy").await;

    let original = fixtures::with_exif(
        &fixtures::jpeg(1600, 1200),
        &fixtures::ExifSpec {
            orientation: Some(8),
            ..Default::default()
        },
    );
    let (status, body) = server.upload(&key, original.clone(), Some("sky.jpg")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let record = server.wait_settled(&key, &id).await;
    assert_eq!(record["status"], "processed", "{record}");
    assert_eq!(
        (record["width"].as_u64(), record["height"].as_u64()),
        (Some(1200), Some(1600))
    );

    let mut keys: Vec<String> = store
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    keys.sort();
    assert_eq!(
        keys,
        [
            format!("originals/{customer}/{id}"),
            format!("renditions/{customer}/{id}/preview"),
            format!("renditions/{customer}/{id}/thumb")
        ]
    );
    let fetched = server
        .get_bytes(&key, &format!("/v1/images/{id}/original"))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(fetched.as_ref(), original.as_slice());
    let thumb = server
        .get_bytes(&key, &format!("/v1/images/{id}/renditions/thumb"))
        .await;
    assert_eq!(thumb.status(), StatusCode::OK);
    assert_eq!(
        image::load_from_memory(&thumb.bytes().await.unwrap())
            .unwrap()
            .height(),
        256
    );

    let (status, _) = server
        .send(
            server
                .client
                .delete(server.url(&format!("/v1/images/{id}")))
                .bearer_auth(&key),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let left: Vec<_> = store.list(None).try_collect().await.unwrap();
    assert!(
        left.is_empty(),
        "deleting an image empties its objects: {left:?}"
    );
    server.stop().await;
}
