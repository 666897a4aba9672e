//! The `lafs` binary as a user runs it: embedded grid, put/get, demo, nodes, clear errors.

use std::path::Path;
use std::process::{Command, Output};

fn lafs(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lafs"))
        .args(args)
        .env("LAFS_HOME", home)
        .env_remove("RUST_LOG")
        .output()
        .expect("lafs runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn put_then_get_on_the_embedded_grid_survives_a_restart() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("input.bin");
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(&file, &data).unwrap();
    let put = lafs(home.path(), &["put", file.to_str().unwrap()]);
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let cap = stdout(&put);
    assert!(
        cap.starts_with("URI:CHK:") && cap.ends_with(":3:10:3000000"),
        "{cap}"
    );
    // a new process: the servers restart from their directories and still hold the shares
    let out = home.path().join("output.bin");
    let get = lafs(home.path(), &["get", &cap, "-o", out.to_str().unwrap()]);
    assert!(
        get.status.success(),
        "{}",
        String::from_utf8_lossy(&get.stderr)
    );
    assert!(std::fs::read(&out).unwrap() == data);
    let to_stdout = lafs(home.path(), &["get", &cap]);
    assert!(to_stdout.stdout == data);
    let json = lafs(home.path(), &["put", file.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json output");
    assert_eq!(v["cap"], cap.as_str());
    assert_eq!(
        v["round_trips"], 1,
        "a re-upload finds every share already stored"
    );
}

#[test]
fn errors_are_clear_and_leave_no_partial_file() {
    let home = tempfile::tempdir().unwrap();
    let bad = lafs(home.path(), &["get", "URI:CHK:nonsense"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("bad capability"));
    let missing = lafs(home.path(), &["put", "/nonexistent/file"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/file"));
    // a well-formed cap for a file nobody stored: an error naming the share counts, no output file
    let cap = "URI:CHK:hah7mxwfpqemm7icdh3hwsa5fa:6epvxt2uxh42obpnfn4wkrplqml7voh7aqpnqnapu7ffcyn2hk3q:3:10:5000";
    let out = home.path().join("never.bin");
    let absent = lafs(home.path(), &["get", cap, "-o", out.to_str().unwrap()]);
    assert_eq!(absent.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&absent.stderr).contains("not enough shares"),
        "{}",
        String::from_utf8_lossy(&absent.stderr)
    );
    assert!(!out.exists());
    assert!(std::fs::read_dir(home.path()).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("partial")));
}

#[test]
fn demo_uploads_reads_stops_servers_and_reads_again() {
    let home = tempfile::tempdir().unwrap();
    let demo = lafs(home.path(), &["demo", "--size-mb", "4"]);
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    let text = stdout(&demo);
    assert!(
        text.contains("stopped 7 of the 10 servers holding shares"),
        "{text}"
    );
    assert_eq!(text.matches("verified 4 MiB").count(), 2, "{text}");
}

#[test]
fn node_create_writes_a_config_that_node_run_would_read() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("n1");
    let create = lafs(
        home.path(),
        &["node", "create", "--storage", dir.to_str().unwrap()],
    );
    assert!(
        create.status.success(),
        "{}",
        String::from_utf8_lossy(&create.stderr)
    );
    let config = std::fs::read_to_string(dir.join("lafs.toml")).unwrap();
    assert!(
        config.contains("kind = \"storage\"") && config.contains("# "),
        "commented TOML"
    );
    let again = lafs(
        home.path(),
        &["node", "create", "--storage", dir.to_str().unwrap()],
    );
    assert_eq!(again.status.code(), Some(1), "refuses to overwrite a node");
    let client = home.path().join("c1");
    assert!(lafs(
        home.path(),
        &["node", "create", "--client", client.to_str().unwrap()]
    )
    .status
    .success());
    let run = lafs(home.path(), &["node", "run", client.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&run.stderr).contains("nothing to serve"));
}
