//! HTTP request parts: multipart upload bodies, Pub/Sub push bodies and their OIDC tokens.

use std::sync::OnceLock;

use axum::body::Body;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::executor::block_on;
use http_body_util::Limited;
use imagelake_gcp::{
    Received,
    oidc::{KeySource, PushVerifier},
};
use imagelake_server::api::multipart::{self, FileParts, MAX_PARTS};

use crate::messages::{assert_clean_filename, check_work};

/// The body limit the multipart target reads under: small, so inputs reach it.
const BODY_LIMIT: usize = 64 << 10;

/// A multipart upload body as the upload endpoint reads it. The first line is the
/// `Content-Type` value (so the boundary parameter is fuzzed too), the rest is the body, handed
/// over in chunks whose size the input's length picks. The `file` parts together are never
/// more than the body, or the body is refused: `400` within the limit, `400` or `413` past it, never a
/// server error.
pub fn multipart(data: &[u8]) {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let content_type = String::from_utf8_lossy(&data[..split]);
    let body = data.get(split + 1..).unwrap_or_default();
    let chunk = 1 + data.len() % 61;
    let chunks: Vec<Result<Bytes, std::convert::Infallible>> = body
        .chunks(chunk)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let stream = Body::from_stream(futures::stream::iter(chunks));
    let limited = Body::new(Limited::new(stream, BODY_LIMIT));
    // Within the limit a body can only be malformed (400); past it, it may also be too large.
    let allowed: &[u16] = if body.len() <= BODY_LIMIT {
        &[400]
    } else {
        &[400, 413]
    };
    let refused = |e: multipart::Error| {
        let status = multipart::refusal(&e, BODY_LIMIT as u64).status();
        assert!(
            allowed.contains(&status.as_u16()),
            "{e} answered {status} for a body of {} bytes",
            body.len()
        );
    };
    let mut parts = match FileParts::new(&content_type, limited) {
        Ok(parts) => parts,
        Err(e) => return refused(e),
    };
    block_on(async {
        let mut read = 0;
        for _ in 0..=MAX_PARTS {
            let part = match parts.next().await {
                Ok(Some(part)) => part,
                Ok(None) => return,
                Err(e) => return refused(e),
            };
            if let Some(name) = part.filename() {
                assert_clean_filename(&name);
            }
            match part.bytes().await {
                Ok(bytes) => {
                    // The parts are pieces of the body: together never more than it.
                    read += bytes.len();
                    assert!(
                        read <= body.len(),
                        "parts of {read} bytes from {}",
                        body.len()
                    );
                }
                Err(e) => return refused(e),
            }
        }
    });
}

/// A Pub/Sub push request body: what parses becomes the same work a pulled message would.
pub fn push_body(data: &[u8]) {
    if let Ok(message) = Received::from_push(data) {
        check_work(&message);
    }
}

/// The audience, service account and key set the token target verifies against; the seeds
/// example signs its tokens with the matching private key (`testdata/`).
pub const PUSH_AUDIENCE: &str = "https://imagelake.example/v1/pubsub/push";
pub const PUSH_ACCOUNT: &str = "push@imagelake-test.iam.gserviceaccount.com";
/// The instant tokens are verified at: the seeds are valid then.
pub const PUSH_NOW: i64 = 1_800_000_000;

/// The seeds' file names that hold tokens the test key really signed, the only ones that may
/// ever pass.
pub const SIGNED_SEED: &str = "signed-";

/// An OIDC token from a push request's `Authorization` header: only a token really signed by
/// a key of the set, for the audience and account, passes. The fuzzer cannot sign, so a pass
/// for any token but a seed's is a forged token accepted.
pub fn oidc_token(data: &[u8]) {
    // A header value is visible ASCII; anything else never reaches the verifier.
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    if !token.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        return;
    }
    if accepted(token) {
        static SEEDS: OnceLock<Vec<String>> = OnceLock::new();
        let signed = SEEDS.get_or_init(signed_seeds);
        assert!(signed.iter().any(|s| s == token), "a forged token passed");
    }
}

/// Whether the push endpoint's verifier accepts `token` at [`PUSH_NOW`].
fn accepted(token: &str) -> bool {
    static VERIFIER: OnceLock<PushVerifier> = OnceLock::new();
    let verifier = VERIFIER.get_or_init(|| {
        // The verifier's HTTP client needs a TLS provider even for a fixed key set.
        let _ = rustls::crypto::ring::default_provider().install_default();
        PushVerifier::new(
            PUSH_AUDIENCE.to_owned(),
            Some(PUSH_ACCOUNT.to_owned()),
            KeySource::Fixed(include_str!("../../../testdata/test-jwks.json").to_owned()),
        )
        .expect("the test key set")
    });
    let now = DateTime::<Utc>::from_timestamp(PUSH_NOW, 0).expect("a valid instant");
    block_on(verifier.verify(token, now)).is_ok()
}

/// The tokens the seeds example signed, read back from the committed corpus.
fn signed_seeds() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus/oidc_token");
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(SIGNED_SEED))
        .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The target is only as strong as its verifier set-up: the signed seeds pass, and no
    /// other input of the corpus does (the other seeds are signed, each wrong in one way).
    #[test]
    fn only_the_signed_seeds_pass() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus/oidc_token");
        let mut passed = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let signed = entry.file_name().to_string_lossy().starts_with(SIGNED_SEED);
            // What the fuzzer kept need not be text; a header value never is anything else.
            let Ok(token) = String::from_utf8(std::fs::read(entry.path()).unwrap()) else {
                continue;
            };
            assert_eq!(accepted(&token), signed, "{:?}", entry.file_name());
            passed += usize::from(signed);
        }
        assert_eq!(passed, 2);
    }
}
