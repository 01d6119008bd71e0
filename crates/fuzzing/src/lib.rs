//! The fuzz targets' bodies: each takes bytes a stranger could send, runs them through the code
//! the door runs, and asserts what must hold of the answer, beyond "no panic".
//!
//! The bodies live in this ordinary workspace crate, not in the instrumented `fuzz/` crate, so
//! `cargo test` replays every committed corpus input and every crash ever found through them
//! (`tests/replay.rs`) without a fuzzer, and `fuzz/fuzz_targets/<name>.rs` is one line that
//! hands libFuzzer's input to [`TARGETS`]. Adding a target: a function here, a row in
//! [`TARGETS`], a file in `fuzz/fuzz_targets/` with its `[[bin]]` in `fuzz/Cargo.toml`, and seeds
//! in `examples/seeds.rs`.

pub mod images;
pub mod messages;
#[allow(unsafe_code)]
mod meter;
pub mod pg;
pub mod requests;
pub mod sql;

pub use meter::{Meter, peak_of};

/// A fuzz target: one input, run to its end; a broken promise panics.
pub type Target = fn(&[u8]);

/// Every target, by the name its corpus folder and fuzz binary carry.
pub const TARGETS: &[(&str, Target)] = &[
    ("inspect", images::inspect),
    ("process", images::process),
    ("exif", images::exif),
    ("multipart", requests::multipart),
    ("push_body", requests::push_body),
    ("oidc_token", requests::oidc_token),
    ("kafka_message", messages::kafka_message),
    ("claim_check", messages::claim_check),
    ("gcs_notification", messages::gcs_notification),
    ("sql", sql::sql),
    ("pg_messages", pg::messages),
];

/// The target named `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// A `name: value` line of a framed input; the value is `None` when the line has no `:`.
pub(crate) type Line<'a> = (&'a [u8], Option<&'a [u8]>);

/// Splits a text-framed input: `name: value` lines up to the first empty line, then the body.
/// Used by the targets whose real input is headers or attributes beside a payload (Kafka
/// messages, Pub/Sub messages), so seeds are readable files and mutations stay meaningful. A
/// line without `:` is a name with no value.
pub(crate) fn headers_and_body(data: &[u8]) -> (Vec<Line<'_>>, &[u8]) {
    let mut headers = Vec::new();
    let mut rest = data;
    while let Some(end) = rest.iter().position(|&b| b == b'\n') {
        let line = rest[..end].strip_suffix(b"\r").unwrap_or(&rest[..end]);
        rest = &rest[end + 1..];
        if line.is_empty() {
            return (headers, rest);
        }
        headers.push(match line.iter().position(|&b| b == b':') {
            Some(colon) => (&line[..colon], Some(line[colon + 1..].trim_ascii_start())),
            None => (line, None),
        });
    }
    (headers, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framed_inputs_split_into_headers_and_body() {
        let (headers, body) = headers_and_body(b"customer-id: abc\r\nflag\n\npayload\n\nmore");
        assert_eq!(
            headers,
            vec![
                (&b"customer-id"[..], Some(&b"abc"[..])),
                (&b"flag"[..], None)
            ]
        );
        assert_eq!(body, b"payload\n\nmore");
        let (headers, body) = headers_and_body(b"no body");
        assert!(headers.is_empty());
        assert_eq!(body, b"no body");
    }
}
