//! The web gateway over real HTTP on loopback: Tahoe's web API subset with its status codes,
//! driven by a small web-API client written the way scripts and the baseline measurement use
//! Tahoe's gateway (only the requests of Tahoe's webapi.rst).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use lafs::gateway::{Gateway, GatewayConfig, SharedKeys};
use lafs::local_grid::{self, LocalGrid};
use lafs_core::crypto::key_source::FixtureKeys;
use lafs_runtime_std::net::ClientConfig;
use lafs_runtime_std::sync::{Arc, Mutex};

fn keys() -> SharedKeys {
    let pem = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/data/rsa-2048-fixture-keys.pem"
    ))
    .unwrap();
    Arc::new(Mutex::new(Box::new(FixtureKeys::from_pem_bundle(&pem))))
}

/// A 5-server grid on loopback and a gateway in front of it.
struct Setup {
    _dir: tempfile::TempDir,
    _grid: LocalGrid,
    gateway: Gateway,
}

fn setup_with(config: GatewayConfig) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let grid = LocalGrid::start(&dir.path().join("grid"), 5).unwrap();
    let mut client = ClientConfig::new(b"convergence".to_vec(), b"lease secret".to_vec());
    client.upload.params.happy = 5;
    let gateway = Gateway::start(
        GatewayConfig {
            listen: "127.0.0.1:0".into(),
            workers: 4,
            ..config
        },
        grid.client(client),
        local_grid::entries(&grid.grid()),
        keys(),
    )
    .unwrap();
    Setup {
        _dir: dir,
        _grid: grid,
        gateway,
    }
}

fn setup() -> Setup {
    setup_with(GatewayConfig::default())
}

/// An answer: status, headers we look at, body.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_range: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
}

/// A minimal web-API client: one keep-alive agent, Tahoe's paths.
struct Wapi {
    base: String,
    agent: ureq::Agent,
}

impl Wapi {
    fn new(setup: &Setup) -> Wapi {
        Wapi {
            base: format!("http://{}", setup.gateway.local_addr()),
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(60))
                .redirects(0)
                .build(),
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<&[u8]>, range: Option<&str>) -> Answer {
        let mut request = self
            .agent
            .request(method, &format!("{}{}", self.base, path));
        if let Some(r) = range {
            request = request.set("Range", r);
        }
        let result = match body {
            Some(b) => request.send_bytes(b),
            None => request.call(),
        };
        let response = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let status = response.status();
        let content_range = response.header("Content-Range").map(String::from);
        let content_type = response.header("Content-Type").map(String::from);
        let mut body = Vec::new();
        response.into_reader().read_to_end(&mut body).unwrap();
        Answer {
            status,
            content_range,
            content_type,
            body,
        }
    }

    fn get(&self, path: &str) -> Answer {
        self.call("GET", path, None, None)
    }

    fn put(&self, path: &str, body: &[u8]) -> Answer {
        self.call("PUT", path, Some(body), None)
    }

    fn post(&self, path: &str) -> Answer {
        self.call("POST", path, Some(b""), None)
    }

    /// `PUT /uri`: upload, the cap back.
    fn upload(&self, data: &[u8]) -> String {
        let a = self.put("/uri", data);
        assert_eq!(a.status, 200, "{}", a.text());
        a.text()
    }

    fn download(&self, cap: &str) -> Vec<u8> {
        let a = self.get(&format!("/uri/{cap}"));
        assert_eq!(a.status, 200, "{}", a.text());
        a.body
    }

    fn mkdir(&self) -> String {
        let a = self.post("/uri?t=mkdir");
        assert_eq!(a.status, 200, "{}", a.text());
        a.text()
    }
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

#[test]
fn immutable_files_upload_download_describe_and_serve_ranges() {
    let s = setup();
    let w = Wapi::new(&s);

    // A 1 kB file: a CHK cap, the same bytes back.
    let small = data(1000, 1);
    let cap = w.upload(&small);
    assert!(cap.starts_with("URI:CHK:"), "{cap}");
    assert_eq!(w.download(&cap), small);

    // Tahoe's t=json description.
    let j = w.get(&format!("/uri/{cap}?t=json")).json();
    assert_eq!(j[0], "filenode");
    assert_eq!(j[1]["ro_uri"], cap.as_str());
    assert_eq!(j[1]["size"], 1000);
    assert_eq!(j[1]["mutable"], false);
    assert_eq!(j[1]["format"], "CHK");
    assert!(j[1]["verify_uri"]
        .as_str()
        .unwrap()
        .starts_with("URI:CHK-Verifier:"));

    // Single byte ranges: 206 with Content-Range; an overrun is truncated; past the end is 416.
    let a = w.call("GET", &format!("/uri/{cap}"), None, Some("bytes=10-19"));
    assert_eq!(a.status, 206);
    assert_eq!(a.body, &small[10..20]);
    assert_eq!(a.content_range.as_deref(), Some("bytes 10-19/1000"));
    let a = w.call("GET", &format!("/uri/{cap}"), None, Some("bytes=990-5000"));
    assert_eq!((a.status, a.body.as_slice()), (206, &small[990..]));
    let a = w.call("GET", &format!("/uri/{cap}"), None, Some("bytes=-5"));
    assert_eq!(a.body, &small[995..]);
    let a = w.call("GET", &format!("/uri/{cap}"), None, Some("bytes=1000-"));
    assert_eq!(a.status, 416, "{}", a.text());

    // A LIT file (the bytes live in the cap).
    let lit = w.upload(b"tiny");
    assert!(lit.starts_with("URI:LIT:"));
    assert_eq!(w.download(&lit), b"tiny");
    assert_eq!(
        w.get(&format!("/uri/{lit}?t=json")).json()[1]["format"],
        "LIT"
    );

    // A 3 MB file streams out (several segments), whole and by range across segments.
    let big = data(3_000_000, 7);
    let cap = w.upload(&big);
    let a = w.get(&format!("/uri/{cap}"));
    assert_eq!(a.status, 200);
    assert_eq!(a.content_type.as_deref(), Some("application/octet-stream"));
    assert!(a.body == big, "the streamed download differs");
    let a = w.call(
        "GET",
        &format!("/uri/{cap}"),
        None,
        Some("bytes=1048000-2500000"),
    );
    assert_eq!(a.status, 206);
    assert!(a.body == big[1_048_000..=2_500_000]);
    assert_eq!(
        a.content_range.as_deref(),
        Some("bytes 1048000-2500000/3000000")
    );
    // Uploading the same bytes again gives the same cap (convergent encryption).
    assert_eq!(w.upload(&big), cap);
}

#[test]
fn mutable_files_are_created_read_and_replaced() {
    let s = setup();
    let w = Wapi::new(&s);
    for (format, prefix) in [("SDMF", "URI:SSK:"), ("mdmf", "URI:MDMF:")] {
        let a = w.put(&format!("/uri?format={format}"), b"version one");
        assert_eq!(a.status, 200, "{}", a.text());
        let cap = a.text();
        assert!(cap.starts_with(prefix), "{cap}");
        assert_eq!(w.download(&cap), b"version one");
        let a = w.put(&format!("/uri/{cap}"), b"version two, longer");
        assert_eq!(a.status, 200, "{}", a.text());
        assert_eq!(w.download(&cap), b"version two, longer");
        let a = w.call("GET", &format!("/uri/{cap}"), None, Some("bytes=8-10"));
        assert_eq!((a.status, a.body.as_slice()), (206, &b"two"[..]));
        let j = w.get(&format!("/uri/{cap}?t=json")).json();
        assert_eq!(j[0], "filenode");
        assert_eq!(j[1]["mutable"], true);
        assert_eq!(j[1]["rw_uri"], cap.as_str());
        // The read cap reads but cannot write.
        let ro = j[1]["ro_uri"].as_str().unwrap().to_string();
        assert_eq!(w.download(&ro), b"version two, longer");
        assert_eq!(w.put(&format!("/uri/{ro}"), b"nope").status, 400);
    }
    // mutable=true is Tahoe's older spelling.
    let a = w.put("/uri?mutable=true", b"old style");
    assert!(a.text().starts_with("URI:SSK:"), "{}", a.text());
}

#[test]
fn directories_link_list_replace_and_unlink_with_tahoes_status_codes() {
    let s = setup();
    let w = Wapi::new(&s);
    let root = w.mkdir();
    assert!(root.starts_with("URI:DIR2:"), "{root}");

    // Upload into a path: missing directories are made; 201 when new, 200 when replaced.
    let a = w.put(
        &format!("/uri/{root}/docs/notes/a.txt"),
        b"first contents of a",
    );
    assert_eq!(a.status, 201, "{}", a.text());
    let first = a.text();
    let a = w.put(
        &format!("/uri/{root}/docs/notes/a.txt"),
        b"second contents of a",
    );
    assert_eq!(a.status, 200, "{}", a.text());
    assert_ne!(a.text(), first);
    assert_eq!(
        w.get(&format!("/uri/{root}/docs/notes/a.txt")).body,
        b"second contents of a"
    );
    // replace=false refuses with 409 and keeps the old link.
    let a = w.put(
        &format!("/uri/{root}/docs/notes/a.txt?replace=false"),
        b"third",
    );
    assert_eq!(a.status, 409, "{}", a.text());
    assert_eq!(
        w.get(&format!("/uri/{root}/docs/notes/a.txt")).body,
        b"second contents of a"
    );

    // Link an existing cap with t=uri.
    let other = w.upload(&data(5000, 3));
    let a = w.put(
        &format!("/uri/{root}/docs/linked.bin?t=uri"),
        other.as_bytes(),
    );
    assert_eq!((a.status, a.text()), (201, other.clone()));
    let a = w.put(
        &format!("/uri/{root}/docs/linked.bin?t=uri&replace=false"),
        other.as_bytes(),
    );
    assert_eq!(a.status, 409);
    assert_eq!(
        w.get(&format!("/uri/{root}/docs/linked.bin")).body,
        data(5000, 3)
    );

    // The listing: Tahoe's t=json shape, children with caps, sizes and metadata.
    let j = w.get(&format!("/uri/{root}/docs?t=json")).json();
    assert_eq!(j[0], "dirnode");
    assert_eq!(j[1]["mutable"], true);
    assert!(j[1]["rw_uri"].as_str().unwrap().starts_with("URI:DIR2:"));
    let children = j[1]["children"].as_object().unwrap();
    let mut names: Vec<&str> = children.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["linked.bin", "notes"]);
    assert_eq!(children["linked.bin"][0], "filenode");
    assert_eq!(children["linked.bin"][1]["ro_uri"], other.as_str());
    assert_eq!(children["linked.bin"][1]["size"], 5000);
    assert!(children["linked.bin"][1]["metadata"]["tahoe"]["linkcrtime"].is_number());
    assert_eq!(children["notes"][0], "dirnode");
    // A child described through its path carries the link's metadata.
    let j = w.get(&format!("/uri/{root}/docs/linked.bin?t=json")).json();
    assert!(j[1]["metadata"]["tahoe"]["linkmotime"].is_number());
    // A directory without t= is an HTML listing.
    let a = w.get(&format!("/uri/{root}/docs"));
    assert!(a.content_type.as_deref().unwrap().starts_with("text/html"));
    assert!(a.text().contains("linked.bin"));

    // mkdir inside a directory, both spellings; an existing directory is the answer.
    let a = w.post(&format!("/uri/{root}/docs?t=mkdir&name=sub"));
    assert_eq!(a.status, 201, "{}", a.text());
    let sub = a.text();
    let a = w.call(
        "PUT",
        &format!("/uri/{root}/docs/sub?t=mkdir"),
        Some(b""),
        None,
    );
    assert_eq!((a.status, a.text()), (200, sub));

    // Unlink: the cap comes back; a missing child is 404.
    let a = w.call(
        "DELETE",
        &format!("/uri/{root}/docs/linked.bin"),
        None,
        None,
    );
    assert_eq!((a.status, a.text()), (200, other));
    assert_eq!(
        w.call(
            "DELETE",
            &format!("/uri/{root}/docs/linked.bin"),
            None,
            None
        )
        .status,
        404
    );
    assert_eq!(w.get(&format!("/uri/{root}/docs/linked.bin")).status, 404);
    assert_eq!(w.get(&format!("/uri/{root}/nowhere/x")).status, 404);

    // Read-only directory caps list but refuse changes.
    let ro = w.get(&format!("/uri/{root}?t=json")).json()[1]["ro_uri"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ro.starts_with("URI:DIR2-RO:"));
    assert_eq!(
        w.get(&format!("/uri/{ro}/docs/notes/a.txt")).body,
        b"second contents of a"
    );
    assert_eq!(w.put(&format!("/uri/{ro}/new.txt"), b"x").status, 400);
}

#[test]
fn bad_requests_get_readable_4xx_answers_and_the_gateway_keeps_serving() {
    let s = setup_with(GatewayConfig {
        max_immutable_upload: 2_000_000,
        max_mutable_upload: 1000,
        max_small_body: 100,
        ..GatewayConfig::default()
    });
    let w = Wapi::new(&s);
    let root = w.mkdir();
    let bad = |a: Answer, status: u16, words: &str| {
        assert_eq!(a.status, status, "{}", a.text());
        assert!(a.text().contains(words), "{:?} lacks {words:?}", a.text());
    };
    bad(w.get("/uri/URI:CHK:not-a-cap"), 400, "not a valid cap");
    bad(w.get("/uri/garbage"), 400, "not a valid cap");
    bad(
        w.get(&format!("/uri/{root}/missing.txt")),
        404,
        "does not exist",
    );
    bad(w.call("PATCH", "/uri", Some(b"x"), None), 400, "PATCH");
    bad(
        w.call("PATCH", &format!("/uri/{root}"), Some(b"x"), None),
        405,
        "PATCH",
    );
    bad(w.get("/no/such/page"), 404, "/uri");
    bad(w.put("/uri?format=XYZ", b"x"), 400, "unknown format");
    bad(w.put("/uri", &vec![0u8; 2_000_001]), 413, "larger than");
    bad(w.put("/uri?format=SDMF", &[0u8; 1001]), 413, "larger than");
    bad(
        w.put(&format!("/uri/{root}/x?t=uri"), &[b'U'; 101]),
        413,
        "larger than",
    );
    bad(
        w.put(&format!("/uri/{root}/x?t=uri"), b"not a cap"),
        400,
        "not a valid cap",
    );
    bad(w.get(&format!("/uri/{root}/a//b")), 400, "double slash");
    let file = w.upload(&data(2000, 9));
    bad(w.get(&format!("/uri/{file}/child")), 400, "not a directory");
    bad(w.post(&format!("/uri/{root}?t=unlink")), 400, "name=");
    bad(
        w.post(&format!("/uri/{root}?t=frobnicate")),
        400,
        "not supported",
    );
    bad(
        w.get(&format!("/uri/{file}?t=frobnicate")),
        400,
        "not supported",
    );

    // Bytes that are not HTTP at all, and a connection dropped mid-body.
    let addr = s.gateway.local_addr();
    let mut raw = TcpStream::connect(addr).unwrap();
    raw.write_all(b"\x00\x01\x02 garbage \r\n\r\n").unwrap();
    let mut sink = Vec::new();
    let _ = raw.read_to_end(&mut sink);
    let mut raw = TcpStream::connect(addr).unwrap();
    raw.write_all(b"PUT /uri HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\npartial")
        .unwrap();
    drop(raw);
    // Still serving.
    let cap = w.upload(b"still here, after all that");
    assert_eq!(w.download(&cap), b"still here, after all that");
}

#[test]
fn a_script_style_session_and_the_statistics_it_leaves() {
    let s = setup();
    let w = Wapi::new(&s);
    // The requests the baseline measurement makes: upload, download, mutable create, mkdir,
    // add a child (link and upload), list.
    let cap = w.upload(&data(1000, 5));
    assert_eq!(w.download(&cap), data(1000, 5));
    let m = w.put("/uri?format=SDMF", b"mutable");
    assert_eq!(m.status, 200);
    let dir = w.mkdir();
    for i in 0..5 {
        let a = w.put(&format!("/uri/{dir}/link-{i}?t=uri"), cap.as_bytes());
        assert_eq!(a.status, 201);
        let a = w.put(&format!("/uri/{dir}/file-{i}"), &data(1000, i));
        assert_eq!(a.status, 201);
    }
    let listing = w.get(&format!("/uri/{dir}?t=json")).json();
    assert_eq!(listing[1]["children"].as_object().unwrap().len(), 10);
    assert_eq!(w.get(&format!("/uri/{dir}/file-3")).body, data(1000, 3));
    // GET /uri?uri=CAP redirects to /uri/CAP (the welcome page's cap box).
    let a = w.get(&format!("/uri?uri={cap}"));
    assert_eq!(a.status, 303);

    let stats = w.get("/statistics?t=json").json();
    let counters = &stats["counters"];
    assert_eq!(counters["gateway.upload.count"], 6, "{counters}");
    assert_eq!(counters["gateway.upload.bytes_in"], 6000);
    assert_eq!(counters["gateway.download.count"], 2);
    assert_eq!(counters["gateway.download.bytes_out"], 2000);
    assert_eq!(counters["gateway.mutable_create.count"], 1);
    assert_eq!(counters["gateway.mkdir.count"], 1);
    assert_eq!(counters["gateway.link.count"], 5);
    // Round trips are counted: an upload is at least one.
    assert!(counters["gateway.upload.round_trips"].as_u64().unwrap() >= 6);
    assert!(stats["stats"]["process.rss_bytes"].as_u64().unwrap() > 0);
    assert_eq!(stats["latency"]["upload"]["count"], 6);
    let text = w.get("/statistics?t=openmetrics");
    assert!(text
        .content_type
        .as_deref()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    assert!(text
        .text()
        .contains("lafs_gateway_operations_total{kind=\"upload\"} 6"));
    assert!(text.text().ends_with("# EOF\n"));
    // Each storage server's own figures: 7 files of 10 shares each (6 immutable, the mutable
    // file and the directory) spread over the 5 servers.
    let servers = stats["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 5, "{stats}");
    assert!(servers.iter().all(|v| v["state"] == "reachable"), "{stats}");
    let held: u64 = servers
        .iter()
        .map(|v| v["shares_held"].as_u64().unwrap())
        .sum();
    assert_eq!(held, 80, "{stats}");
    assert_eq!(stats["stats"]["storage.shares_held"], 80);
    assert_eq!(stats["stats"]["storage.servers_reachable"], 5);
    assert!(servers
        .iter()
        .all(|v| v["used_space"].as_u64().unwrap() > 1000));
    let metrics = text.text();
    let first = servers[0]["id"].as_str().unwrap();
    assert!(
        metrics.contains(&format!(
            "lafs_storage_shares_held{{server=\"{first}\"}} {}",
            servers[0]["shares_held"]
        )),
        "{metrics}"
    );
    // The welcome page lists the servers and has the upload form.
    let page = w.get("/").text();
    assert!(page.contains("5 of 5 reachable"), "{page}");
    assert!(page.contains(" 80 shares held"), "{page}");
    assert!(page.contains("id=\"upload\""));
}
