//! Writes the fuzz targets' seed inputs: images the project generates, and messages, bodies and
//! tokens written here, into `fuzz/corpus/<target>/` (committed); with `--photos DIR`, also
//! real photographs cut small into `fuzz/photos/<target>/` (not committed: the photographs are
//! not the project's). Each seed is named after its content, so writing again changes nothing.
//!
//!   cargo run -p imagelake-fuzzing --example seeds -- [--photos .corpus/photos]

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::{Engine, engine::general_purpose::STANDARD};
use imagelake_fuzzing::requests::{PUSH_ACCOUNT, PUSH_AUDIENCE, PUSH_NOW, SIGNED_SEED};
use imagelake_gcp::signing::ServiceAccountKey;
use imagelake_imaging::fixtures::{self, ExifSpec};
use serde_json::json;

const CUSTOMER: &str = "0195f3c6-7d2e-7cc1-b1a9-6a2f0f6f3d11";
const IMAGE: &str = "0195f3c6-7d2e-7cc1-b1a9-6a2f0f6f3d12";

fn main() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let images = images();
    let mut seeds: Vec<(&str, Vec<u8>)> = Vec::new();
    for image in &images {
        for target in ["inspect", "process"] {
            seeds.push((target, image.clone()));
        }
    }
    seeds.extend(exif().into_iter().map(|s| ("exif", s)));
    seeds.extend(multipart(&images[0]).into_iter().map(|s| ("multipart", s)));
    seeds.extend(kafka().into_iter().map(|s| ("kafka_message", s)));
    seeds.extend(claims().into_iter().map(|s| ("claim_check", s)));
    seeds.extend(sql().into_iter().map(|s| ("sql", s)));
    seeds.extend(pg().into_iter().map(|s| ("pg_messages", s)));
    let notifications = notifications();
    for notification in &notifications {
        let (attributes, data) = notification;
        let attributes: Vec<(&str, &str)> =
            attributes.iter().map(|(k, v)| (*k, v.as_str())).collect();
        seeds.push(("gcs_notification", framed(&attributes, data)));
        seeds.push(("push_body", push(notification)));
    }
    for (target, bytes) in &seeds {
        write(&root.join("corpus").join(target), "", bytes)?;
    }
    for (n, token) in tokens()?.into_iter().enumerate() {
        let signed = if n < 2 { SIGNED_SEED } else { "" };
        write(&root.join("corpus/oidc_token"), signed, token.as_bytes())?;
    }
    if let Some(dir) = photos_arg() {
        cut_photos(&dir, &root.join("photos"))?;
    }
    Ok(())
}

fn photos_arg() -> Option<PathBuf> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == "--photos")?;
    args.get(at + 1).map(PathBuf::from)
}

/// PostgreSQL wire messages as clients send them: SSLRequest, a startup message, a login's
/// SCRAM first message, simple and extended queries, and broken ones (cut short, an absurd
/// length); and catalog queries as text.
fn pg() -> Vec<Vec<u8>> {
    fn message(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }
    fn untagged(body: &[u8]) -> Vec<u8> {
        let mut m = (body.len() as u32 + 4).to_be_bytes().to_vec();
        m.extend_from_slice(body);
        m
    }
    let ssl = untagged(&80_877_103u32.to_be_bytes());
    let mut startup_body = 196_608u32.to_be_bytes().to_vec();
    startup_body.extend_from_slice(b"user\0analyst\0database\0imagelake\0\0");
    let startup = untagged(&startup_body);
    let scram = message(b'p', b"SCRAM-SHA-256\0\0\0\0\x14n,,n=,r=abcdefghijklmnop");
    let query = message(b'Q', b"SELECT count(*) FROM live.images\0");
    let parse = message(b'P', b"\0SELECT $1::int\0\0\x01\0\0\0\x17");
    let bind = message(
        b'B',
        b"\0\0\0\x01\0\x01\0\x01\0\0\0\x04\0\0\0\x2a\0\x01\0\x01",
    );
    let extended = [
        parse,
        bind,
        message(b'D', b"P\0"),
        message(b'E', b"\0\0\0\0\0"),
        message(b'S', b""),
    ]
    .concat();
    let mut cut = query.clone();
    cut.truncate(9);
    let absurd = [b'Q', 0x7f, 0xff, 0xff, 0xff, b'S'].to_vec();
    let mut seeds = vec![
        [ssl, startup.clone(), scram].concat(),
        [startup, query.clone()].concat(),
        extended,
        cut,
        absurd,
        query,
    ];
    for text in [
        "SELECT c.relname FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r','p','v','m','S','f','') AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 1",
        "SELECT current_setting('server_version_num')::int / 100",
        "SELECT 'images'::regclass, format_type(23, NULL), quote_ident('a b')",
        "BEGIN READ ONLY; SET datestyle = 'ISO'; SHOW TRANSACTION ISOLATION LEVEL; COMMIT",
    ] {
        seeds.push(text.as_bytes().to_vec());
    }
    seeds
}

/// Writes `bytes` as `<prefix><hash>` in `dir`.
/// `POST /v1/sql` bodies and bare SQL: reads, writes in disguise, parameters of each kind.
fn sql() -> Vec<Vec<u8>> {
    [
        r#"{"sql": "SELECT type, count(*) FROM events WHERE occurred_at > now() - INTERVAL '1 day' GROUP BY ALL"}"#,
        r#"{"sql": "SELECT * FROM images WHERE image_id = $1 AND bytes > $2", "params": ["0195", 10, 1.5, true, null]}"#,
        r#"{"sql": "WITH a AS (SELECT 1) SELECT * FROM a UNION ALL SELECT 2", "params": [[1], {"a": 1}]}"#,
        r#"{"sql": "EXPLAIN SELECT h.hour FROM hours(now() - INTERVAL '1 day', now()) h"}"#,
        "SELECT 1 INTO t",
        "COPY (SELECT 1) TO '/tmp/x'; DROP TABLE events",
        "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION 's3://b/'",
        "SHOW TABLES",
        "DESCRIBE quarantine.events",
        "SELECT * FORM events WHERE (((",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

fn write(dir: &Path, prefix: &str, bytes: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let name = format!("{prefix}{:016x}", fnv(bytes));
    std::fs::write(dir.join(name), bytes).with_context(|| format!("writing into {dir:?}"))
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Small images of every format and layout the decoders have a path for. (The Display P3 JPEG's
/// profile carries the time it was made, so a new run adds one more of it: keep the first.)
fn images() -> Vec<Vec<u8>> {
    vec![
        fixtures::png(24, 16),
        fixtures::jpeg(40, 30),
        fixtures::progressive_jpeg(40, 30),
        fixtures::png_with_alpha(20, 20),
        fixtures::gif(16, 12),
        fixtures::webp(24, 16),
        fixtures::interlaced_png(33, 17),
        fixtures::deep_png(12, 9),
        fixtures::cmyk_jpeg(16, 16),
        fixtures::display_p3_jpeg(16, 16, [200, 30, 40]),
        fixtures::png_bomb(100_000, 100_000),
        fixtures::gif_frame_bomb(64, 64),
        fixtures::webp_frame_bomb(64, 64),
        fixtures::webp_huffman_bomb(64),
        fixtures::webp_huffman_bomb(256),
        fixtures::with_exif(&fixtures::jpeg(30, 20), &full_exif(6)),
    ]
}

fn full_exif(orientation: u16) -> ExifSpec {
    ExifSpec {
        orientation: Some(orientation),
        make: Some("Fuzzcam"),
        model: Some("F-1"),
        taken_at: Some("2024:02:29 23:59:58"),
        offset: Some("+05:30"),
        gps: Some((-33.8568, 151.2153)),
    }
}

fn exif() -> Vec<Vec<u8>> {
    let small = fixtures::jpeg(8, 8);
    let mut seeds: Vec<Vec<u8>> = (1..=8)
        .map(|o| fixtures::with_exif(&small, &full_exif(o)))
        .collect();
    seeds.push(fixtures::with_exif(
        &small,
        &ExifSpec {
            taken_at: Some("2019:05:01 12:34:56"),
            ..ExifSpec::default()
        },
    ));
    seeds
}

fn multipart(image: &[u8]) -> Vec<Vec<u8>> {
    let part = |name: &str, filename: Option<&str>, body: &[u8]| {
        let disposition = match filename {
            Some(f) => format!("form-data; name=\"{name}\"; filename=\"{f}\""),
            None => format!("form-data; name=\"{name}\""),
        };
        let mut out = format!(
            "--XyZ\r\nContent-Disposition: {disposition}\r\nContent-Type: image/png\r\n\r\n"
        )
        .into_bytes();
        out.extend_from_slice(body);
        out.extend_from_slice(b"\r\n");
        out
    };
    let body = |parts: &[Vec<u8>], end: bool| {
        let mut out = b"multipart/form-data; boundary=XyZ\n".to_vec();
        for p in parts {
            out.extend_from_slice(p);
        }
        if end {
            out.extend_from_slice(b"--XyZ--\r\n");
        }
        out
    };
    let one = part("file", Some("cat.png"), image);
    let two = part("file", Some("../../etc/\u{202e}gpj.exe"), b"not an image");
    let other = part("caption", None, b"a caption");
    vec![
        body(std::slice::from_ref(&one), true),
        body(&[other, one.clone(), two], true),
        body(&[one], false),
        b"multipart/form-data; boundary=\"quoted boundary\"\n--quoted boundary--\r\n".to_vec(),
    ]
}

/// `header: value` lines, an empty line, the body.
fn framed(headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}: {value}\n").as_bytes());
    }
    out.push(b'\n');
    out.extend_from_slice(body);
    out
}

fn kafka() -> Vec<Vec<u8>> {
    let claim = imagelake_kafka::CLAIM_CONTENT_TYPE;
    vec![
        framed(
            &[("customer-id", CUSTOMER), ("filename", "cat.png")],
            &fixtures::png(4, 4),
        ),
        framed(
            &[
                ("customer-id", CUSTOMER),
                ("content-type", claim),
                ("idempotency-key", "batch-7"),
            ],
            br#"{"object": "claims/batch-7/cat.jpg"}"#,
        ),
        framed(&[("content-type", claim)], br#"{"object": "originals/x"}"#),
        framed(&[("Customer-ID", " not-an-id ")], b""),
    ]
}

fn claims() -> Vec<Vec<u8>> {
    [
        r#"{"object": "claims/batch-1/cat.jpg"}"#,
        r#"{"object": "claims/../originals/c/i"}"#,
        r#"{"object": "claims//a"}"#,
        r#"{"object": "claims/a", "extra": 1}"#,
    ]
    .map(|s| s.as_bytes().to_vec())
    .to_vec()
}

type Notification = (Vec<(&'static str, String)>, Vec<u8>);

/// Attributes and data of the GCS notifications and re-queued work Pub/Sub carries.
fn notifications() -> Vec<Notification> {
    let original = format!("originals/{CUSTOMER}/{IMAGE}");
    let event = |kind: &str, bucket: &str| {
        vec![
            ("payloadFormat", "JSON_API_V1".to_owned()),
            ("eventType", kind.to_owned()),
            ("bucketId", bucket.to_owned()),
            ("objectId", original.clone()),
            ("objectGeneration", "1700000000000001".to_owned()),
        ]
    };
    let data = json!({"name": original, "metadata": {"customer-id": CUSTOMER}})
        .to_string()
        .into_bytes();
    vec![
        (event("OBJECT_FINALIZE", "imagelake-images"), data.clone()),
        (event("OBJECT_DELETE", "imagelake-images"), data.clone()),
        (event("OBJECT_FINALIZE", "another-bucket"), data),
        (
            vec![
                ("imagelakeCustomerId", CUSTOMER.to_owned()),
                ("imagelakeImageId", IMAGE.to_owned()),
            ],
            Vec::new(),
        ),
    ]
}

fn push((attributes, data): &Notification) -> Vec<u8> {
    let attributes: serde_json::Map<String, serde_json::Value> = attributes
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    json!({
        "message": {"attributes": attributes, "data": STANDARD.encode(data), "messageId": "1", "publishTime": "2026-01-01T00:00:00Z"},
        "subscription": "projects/p/subscriptions/imagelake-push",
        "deliveryAttempt": 2,
    })
    .to_string()
    .into_bytes()
}

/// Two tokens the test key signed that pass, then signed tokens each wrong in one way.
fn tokens() -> Result<Vec<String>> {
    let key = ServiceAccountKey::from_file(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/test-service-account.json"),
    )?;
    let claims = |aud: &str, email: &str, verified: bool, exp: i64| {
        json!({
            "aud": aud, "iss": "https://accounts.google.com", "email": email,
            "email_verified": verified, "iat": PUSH_NOW - 60, "exp": exp,
        })
    };
    let good = claims(PUSH_AUDIENCE, PUSH_ACCOUNT, true, PUSH_NOW + 3600);
    let mut good_other_issuer = good.clone();
    good_other_issuer["iss"] = json!("accounts.google.com");
    [
        good,
        good_other_issuer,
        claims(
            "https://elsewhere.example",
            PUSH_ACCOUNT,
            true,
            PUSH_NOW + 3600,
        ),
        claims(PUSH_AUDIENCE, "intruder@example.com", true, PUSH_NOW + 3600),
        claims(PUSH_AUDIENCE, PUSH_ACCOUNT, false, PUSH_NOW + 3600),
        claims(PUSH_AUDIENCE, PUSH_ACCOUNT, true, PUSH_NOW - 3600),
    ]
    .iter()
    .map(|c| Ok(key.jwt(c)?))
    .collect()
}

/// Real photographs cut small: each file's headers (everything before the image data, EXIF and
/// ICC included) and the first 2 KiB of its data.
fn cut_photos(from: &Path, to: &Path) -> Result<()> {
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {from:?}"))? {
        let bytes = std::fs::read(entry?.path())?;
        let data_at = find(&bytes, &[0xFF, 0xDA])
            .or_else(|| find(&bytes, b"IDAT"))
            .unwrap_or(0);
        let cut = &bytes[..bytes.len().min(data_at + 2048)];
        for target in ["inspect", "process", "exif"] {
            write(&to.join(target), "", cut)?;
        }
    }
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
