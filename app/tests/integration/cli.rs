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
    // A client node serves the web gateway for its grid: without a grid file it says so.
    let run = lafs(home.path(), &["node", "run", client.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("grid.toml"),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    stdout(o)
}

fn failed(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(1), "{}", stdout(o));
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

/// Runs the directory commands of a user session against `extra` grid arguments.
fn directory_session(home: &Path, extra: &[&str]) {
    let run = |args: &[&str]| {
        let all: Vec<&str> = args.iter().chain(extra).copied().collect();
        lafs(home, &all)
    };
    let file = home.join("notes.txt");
    std::fs::write(&file, b"first notes\n").unwrap();
    let big = home.join("big.bin");
    let big_data: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(&big, &big_data).unwrap();
    let file = file.to_str().unwrap();

    // No default alias yet: a clear error that says how to make one.
    let err = failed(&run(&["ls"]));
    assert!(err.contains("lafs alias create tahoe"), "{err}");
    assert_eq!(
        ok(&run(&["alias", "create", "tahoe"])),
        "alias tahoe created"
    );
    let listed = ok(&run(&["alias", "list"]));
    let root = listed.strip_prefix("tahoe: ").expect("alias list line");
    assert!(root.starts_with("URI:DIR2:"), "{listed}");
    assert_eq!(ok(&run(&["ls"])), "");

    let docs = ok(&run(&["mkdir", "tahoe:docs"]));
    assert!(docs.starts_with("URI:DIR2:"), "{docs}");
    let mdmf = ok(&run(&["mkdir", "--format", "mdmf"]));
    assert!(mdmf.starts_with("URI:DIR2-MDMF:"), "unlinked: {mdmf}");
    ok(&run(&["alias", "add", "m", &mdmf]));
    // put into a directory by alias path, by DIRCAP/path, and into a directory by its name.
    let cap = ok(&run(&["put", file, "docs/notes.txt"]));
    assert!(cap.starts_with("URI:LIT:"), "{cap}");
    let big_cap = ok(&run(&[
        "put",
        big.to_str().unwrap(),
        &format!("{docs}/big.bin"),
    ]));
    assert!(big_cap.starts_with("URI:CHK:"), "{big_cap}");
    ok(&run(&["put", file, "m:"]));
    assert_eq!(ok(&run(&["ls", "m:"])), "notes.txt");
    assert_eq!(ok(&run(&["ls", "docs"])), "big.bin\nnotes.txt");
    assert_eq!(ok(&run(&["ls", &docs])), "big.bin\nnotes.txt");
    let long = ok(&run(&["ls", "-l", "tahoe:docs"]));
    assert!(
        long.lines()
            .any(|l| l.starts_with("-r--") && l.contains(" 200000 ") && l.ends_with(" big.bin")),
        "{long}"
    );
    let top = ok(&run(&["ls", "-l"]));
    assert!(top.starts_with("drwx") && top.ends_with(" docs"), "{top}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&run(&["ls", "--json", "docs"]))).unwrap();
    assert_eq!(json["children"][0]["name"], "big.bin");
    assert_eq!(json["children"][0]["ro_uri"], big_cap.as_str());
    assert_eq!(json["children"][0]["size"], 200_000);

    // get by path, to stdout and to a file.
    assert_eq!(ok(&run(&["get", "docs/notes.txt"])), "first notes");
    let out = home.join("big.out");
    ok(&run(&[
        "get",
        "tahoe:docs/big.bin",
        "-o",
        out.to_str().unwrap(),
    ]));
    assert!(std::fs::read(&out).unwrap() == big_data);
    // Replacing a file keeps one link with the new contents.
    std::fs::write(home.join("notes.txt"), b"second notes\n").unwrap();
    ok(&run(&["put", file, "docs/notes.txt"]));
    assert_eq!(ok(&run(&["get", "docs/notes.txt"])), "second notes");

    // mv: rename within, move into another directory, refuse to replace a directory.
    ok(&run(&["mv", "docs/notes.txt", "docs/renamed.txt"]));
    ok(&run(&["mkdir", "archive"]));
    ok(&run(&["mv", "docs/renamed.txt", "archive"]));
    assert_eq!(ok(&run(&["ls", "archive"])), "renamed.txt");
    assert_eq!(ok(&run(&["ls", "docs"])), "big.bin");
    let err = failed(&run(&["mv", "docs/big.bin", "tahoe:archive/../x"]));
    assert!(err.contains("'.' and '..'"), "{err}");
    // rm, and errors that change nothing.
    ok(&run(&["rm", "archive/renamed.txt"]));
    assert_eq!(ok(&run(&["ls", "archive"])), "");
    let err = failed(&run(&["rm", "archive/renamed.txt"]));
    assert!(err.contains("no child named \"renamed.txt\""), "{err}");
    let err = failed(&run(&["get", "docs"]));
    assert!(err.contains("is a directory"), "{err}");
    let err = failed(&run(&["ls", "docs/missing"]));
    assert!(err.contains("\"docs/missing\" does not exist"), "{err}");
    let err = failed(&run(&["mkdir", "docs"]));
    assert!(err.contains("already exists"), "{err}");
    let err = failed(&run(&["ls", "nope:x"]));
    assert!(err.contains("no alias \"nope\""), "{err}");

    // A read-only alias lists but refuses changes, and the directory is unchanged.
    let ro = ok(&run(&["ls", "--json", "tahoe:"]));
    let ro: serde_json::Value = serde_json::from_str(&ro).unwrap();
    let docs_ro = ro["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "docs")
        .unwrap()["ro_uri"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(docs_ro.starts_with("URI:DIR2-RO:"), "{docs_ro}");
    ok(&run(&["alias", "add", "view", &docs_ro]));
    assert_eq!(ok(&run(&["ls", "view:"])), "big.bin");
    for args in [
        vec!["put", file, "view:new.txt"],
        vec!["rm", "view:big.bin"],
        vec!["mv", "view:big.bin", "view:b2.bin"],
        vec!["mkdir", "view:sub"],
    ] {
        let err = failed(&run(&args));
        assert!(err.contains("read-only"), "{args:?}: {err}");
    }
    assert_eq!(ok(&run(&["ls", "docs"])), "big.bin");
}

#[test]
fn directories_and_aliases_on_the_embedded_grid() {
    let home = tempfile::tempdir().unwrap();
    directory_session(home.path(), &[]);
    // Aliases live in the embedded client node, Tahoe's format.
    let text = std::fs::read_to_string(home.path().join("client/private/aliases")).unwrap();
    assert!(
        text.lines().any(|l| l.starts_with("tahoe: URI:DIR2:")),
        "{text}"
    );
}

/// Kills the `lafs grid up` this test started when the test ends, however it ends.
struct Served(std::process::Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn directories_on_a_configured_grid() {
    let home = tempfile::tempdir().unwrap();
    let served = home.path().join("served");
    let _grid = Served(
        Command::new(env!("CARGO_BIN_EXE_lafs"))
            .args([
                "grid",
                "up",
                "--servers",
                "10",
                "--web",
                "127.0.0.1:0",
                "--dir",
            ])
            .arg(&served)
            .env("LAFS_HOME", home.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let grid_file = served.join("grid.toml");
    let started = std::time::Instant::now();
    while !grid_file.exists() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "grid up wrote no grid file"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // A client node of its own, pointed at the served grid.
    let node = home.path().join("client-node");
    ok(&lafs(
        home.path(),
        &["node", "create", "--client", node.to_str().unwrap()],
    ));
    std::fs::copy(&grid_file, node.join("grid.toml")).unwrap();
    directory_session(home.path(), &["--node", node.to_str().unwrap()]);
    assert!(std::fs::read_to_string(node.join("private/aliases"))
        .unwrap()
        .contains("tahoe: URI:DIR2:"));
    // The embedded grid's client never saw these aliases.
    assert!(!home.path().join("client/private/aliases").exists());
    // --grid FILE with the embedded client node's aliases reaches the same servers.
    let run = lafs(
        home.path(),
        &[
            "alias",
            "add",
            "x",
            &format!("URI:DIR2:{}", "a".repeat(26) + ":" + &"a".repeat(52)),
        ],
    );
    ok(&run);
    let err = failed(&lafs(
        home.path(),
        &["ls", "x:", "--grid", grid_file.to_str().unwrap()],
    ));
    assert!(
        err.contains("could not be read") && err.contains("no shares"),
        "{err}"
    );
}

#[test]
fn grid_up_with_fewer_servers_than_happiness_serves_a_gateway_that_uploads() {
    use std::io::{BufRead, BufReader};
    let home = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lafs"))
        .args(["grid", "up", "--servers", "5", "--web", "127.0.0.1:0"])
        .env("LAFS_HOME", home.path())
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _grid = Served(child);
    let banner = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("web gateway on "))
        .expect("grid up prints its gateway");
    assert!(banner.ends_with("(shares 3-of-10, happy 5)"), "{banner}");
    let url = banner
        .split_whitespace()
        .nth(3)
        .unwrap()
        .trim_end_matches('/');
    let cap = ureq::put(&format!("{url}/uri"))
        .send_bytes(&[7u8; 5000])
        .expect("upload through the gateway")
        .into_string()
        .unwrap();
    assert!(cap.starts_with("URI:CHK:"), "{cap}");
    let mut back = Vec::new();
    std::io::Read::read_to_end(
        &mut ureq::get(&format!("{url}/uri/{cap}"))
            .call()
            .unwrap()
            .into_reader(),
        &mut back,
    )
    .unwrap();
    assert_eq!(back, vec![7u8; 5000]);
}
