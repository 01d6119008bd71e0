//! Browser sessions ([`SessionStore`](crate::SessionStore)), the same on every backend.

use imagelake_core::{KeyId, records::Session};
use uuid::Uuid;

use super::{secs, t0};
use crate::MetadataStore;

fn session(key: KeyId, n: i64) -> Session {
    Session {
        id: Uuid::now_v7(),
        token_hash: format!("{:032x}{:032x}", key.0.as_u128(), n),
        key_id: key,
        key_hash: "ab".repeat(32),
        csrf: format!("csrf-{n}"),
        created_at: t0() + secs(n),
        expires_at: t0() + secs(3600 + n),
        user_agent: (n == 0).then(|| "Mozilla/5.0".to_owned()),
    }
}

pub async fn sessions_are_found_listed_and_ended(store: &dyn MetadataStore) {
    let key = KeyId::new();
    let other = KeyId::new();
    let first = session(key, 0);
    let second = session(key, 100);
    let elsewhere = session(other, 200);
    for s in [&first, &second, &elsewhere] {
        store.put_session(s).await.unwrap();
    }

    assert_eq!(
        store.find_session(&first.token_hash).await.unwrap(),
        Some(first.clone()),
        "a session round-trips whole"
    );
    assert_eq!(store.find_session(&"00".repeat(32)).await.unwrap(), None);
    let listed = store.key_sessions(key).await.unwrap();
    assert_eq!(
        listed,
        [second.clone(), first.clone()],
        "newest first, own key only"
    );

    assert!(
        !store.end_session(other, first.id).await.unwrap(),
        "another key cannot end it"
    );
    assert!(store.end_session(key, first.id).await.unwrap());
    assert_eq!(store.find_session(&first.token_hash).await.unwrap(), None);
    assert!(!store.end_session(key, first.id).await.unwrap());

    let purged = store.purge_sessions(t0() + secs(3600 + 150)).await.unwrap();
    assert_eq!(purged, 1, "only the session expired by then goes");
    assert_eq!(store.find_session(&second.token_hash).await.unwrap(), None);
    assert_eq!(
        store.find_session(&elsewhere.token_hash).await.unwrap(),
        Some(elsewhere)
    );
}
