//! The client commands against a running server, as a user runs them.

mod common;

use std::process::Command;

use common::{ADMIN, start, temp_dir};
use imagelake_imaging::fixtures;

fn imagelake(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_imagelake"))
        .args(args)
        .env_remove("IMAGELAKE_ADMIN_TOKEN")
        .env_remove("IMAGELAKE_API_KEY")
        // As on machines that set it: errors still read as messages, not stack traces.
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run imagelake")
}

#[test]
fn customers_create_then_upload_a_folder() {
    let data = temp_dir("cli-data");
    let mut server = start(&data);
    let created = imagelake(&[
        "customers",
        "create",
        "--name",
        "Acme",
        "--email",
        "ops@acme.test",
        "--admin-token",
        ADMIN,
        "--server",
        &server.base,
    ]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let stdout = String::from_utf8(created.stdout).unwrap();
    let key = stdout
        .lines()
        .find_map(|l| l.strip_prefix("api key:"))
        .expect("the key is printed")
        .trim()
        .to_owned();
    assert!(key.starts_with("ilk_"));

    let folder = temp_dir("cli-upload");
    std::fs::create_dir_all(folder.join("sub")).unwrap();
    std::fs::write(folder.join("a.jpg"), fixtures::jpeg(300, 200)).unwrap();
    std::fs::write(folder.join("copy-of-a.jpg"), fixtures::jpeg(300, 200)).unwrap();
    std::fs::write(folder.join("sub/b.png"), fixtures::png(120, 90)).unwrap();
    std::fs::write(folder.join("notes.txt"), "not an image").unwrap();
    let uploaded = imagelake(&[
        "upload",
        folder.to_str().unwrap(),
        "--key",
        &key,
        "--server",
        &server.base,
    ]);
    // The refused file makes the exit status say so.
    assert!(!uploaded.status.success());
    assert!(
        String::from_utf8_lossy(&uploaded.stderr).contains("1 of 4 files were refused"),
        "{}",
        String::from_utf8_lossy(&uploaded.stderr)
    );
    let summary = String::from_utf8(uploaded.stdout).unwrap();
    assert!(
        summary.contains("stored: 2, duplicates: 1, refused: 1"),
        "{summary}"
    );
    assert!(
        summary.contains("notes.txt: unsupported_media_type"),
        "{summary}"
    );

    // Running it again stores nothing new.
    let again = String::from_utf8(
        imagelake(&[
            "upload",
            folder.to_str().unwrap(),
            "--key",
            &key,
            "--server",
            &server.base,
        ])
        .stdout,
    )
    .unwrap();
    assert!(
        again.contains("stored: 0, duplicates: 3, refused: 1"),
        "{again}"
    );

    let refused = imagelake(&[
        "customers",
        "create",
        "--name",
        "X",
        "--email",
        "x@x.test",
        "--admin-token",
        "wrong",
        "--server",
        &server.base,
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unauthorized"));

    // The embedded deployment's event log: one event per change, in commit order.
    let events = |extra: &[&str]| -> Vec<serde_json::Value> {
        let mut args = vec!["events", "--data-dir", data.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = imagelake(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let log = events(&[]);
    assert_eq!(log[0]["event"]["type"], "customer.created");
    let received = log
        .iter()
        .filter(|l| l["event"]["type"] == "image.received")
        .count();
    assert_eq!(
        received, 2,
        "duplicates and refusals are no change: {log:?}"
    );
    assert!(
        log.windows(2)
            .all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64())
    );
    let first = log[0]["seq"].as_u64().unwrap().to_string();
    let rest = events(&["--after", &first, "--limit", "1"]);
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["seq"], log[1]["seq"]);
    let nowhere = temp_dir("cli-no-data");
    let missing = imagelake(&["events", "--data-dir", nowhere.to_str().unwrap()]);
    assert!(!missing.status.success());
    let said = String::from_utf8_lossy(&missing.stderr);
    assert!(
        said.starts_with("Error: ") && said.contains("no database at"),
        "{said}"
    );
    assert!(!said.contains("backtrace"), "{said}");

    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_dir_all(&folder);
}

#[test]
fn keys_create_list_and_revoke() {
    let data = temp_dir("cli-keys");
    let server = start(&data);
    let admin = ["--admin-token", ADMIN, "--server", &server.base];
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&admin);
        let out = imagelake(&all);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let created = run(&["keys", "create", "--role", "ingest", "--name", "billing"]);
    let field = |name: &str| {
        created
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} is printed: {created}"))
            .trim()
            .to_owned()
    };
    assert!(field("api key:").starts_with("ilk_"));
    assert_eq!(field("role:"), "ingest");
    let key_id = field("key id:");
    let listed = run(&["keys", "list"]);
    assert!(
        listed.contains("\"billing\"") && listed.contains(&key_id),
        "{listed}"
    );
    assert!(!listed.contains(&field("api key:")), "no secret is listed");
    run(&["keys", "revoke", &key_id]);
    assert!(run(&["keys", "list"]).contains("revoked_at"));
    let bad = imagelake(&["keys", "create", "--role", "root", "--name", "x"]);
    assert!(!bad.status.success(), "an unknown role is refused");
}
