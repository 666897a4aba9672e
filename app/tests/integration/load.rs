//! `lafs load` as a user runs it: the embedded grid (storage-node processes and a gateway
//! process) started, loaded, reported on and stopped.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

fn lafs_load(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lafs"))
        .arg("load")
        .args(args)
        .env("LAFS_HOME", home)
        .env_remove("RUST_LOG")
        .output()
        .expect("lafs runs")
}

/// The number in the table row `| NAME | N |`.
fn row(table: &str, name: &str) -> u64 {
    let prefix = format!("| {name} | ");
    let line = table
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no row {name:?} in:\n{table}"));
    line[prefix.len()..]
        .trim_end_matches(" |")
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("row {line:?} is not a count"))
}

#[test]
fn a_short_paced_run_reports_ops_and_no_errors() {
    let home = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let out = lafs_load(
        home.path(),
        &["--duration", "3", "--clients", "2", "--preload", "3"],
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{table}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(row(&table, "ops") > 0, "{table}");
    assert_eq!(row(&table, "errors"), 0, "{table}");
    for name in ["gateway", "storage 0", "storage 4"] {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(&format!("| {name} | "))),
            "{table}"
        );
    }
    assert!(table.contains("| paced, ops/s |"), "{table}");
    assert!(t.elapsed().as_secs() < 30, "took {:?}", t.elapsed());
    // the grid's processes and files are gone
    let left: Vec<_> = std::fs::read_dir(home.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("load-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_closed_loop_run_stops_at_max_ops_and_prints_json() {
    let home = tempfile::tempdir().unwrap();
    let out = lafs_load(
        home.path(),
        &[
            "--closed-loop",
            "--max-ops",
            "60",
            "--json",
            "--preload",
            "3",
            "--seed",
            "7",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(v["ops"], 60, "{v}");
    assert_eq!(v["errors"], 0, "{v}");
    assert_eq!(
        v["reads"].as_u64().unwrap() + v["writes"].as_u64().unwrap(),
        60
    );
    assert!(v["reads"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["options"]["seed"], 7);
    assert!(v["read_latency_ms"]["p50"].as_f64().unwrap() > 0.0, "{v}");
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 6, "5 storage nodes and the gateway: {v}");
    assert!(
        nodes.iter().all(|n| n["rss_bytes"].as_u64().unwrap() > 0),
        "{v}"
    );
}

#[test]
fn bad_options_are_refused_clearly() {
    let home = tempfile::tempdir().unwrap();
    let out = lafs_load(home.path(), &["--read-fraction", "1.5"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--read-fraction"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
