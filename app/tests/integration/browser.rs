//! The web gateway's pages for people, in a real headless browser (Chromium driven by
//! chromedriver over the W3C WebDriver protocol), plus the browser form uploads over plain
//! HTTP.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`/usr/bin/chromium`,
//! `/usr/bin/chromedriver`). Without them the browser test prints "skipped: ..." and passes,
//! unless `LAFS_REQUIRE_BROWSER=1` (as CI sets), when it fails.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lafs::gateway::{Gateway, GatewayConfig, SharedKeys};
use lafs::local_grid::{self, LocalGrid};
use lafs_core::crypto::key_source::FixtureKeys;
use lafs_runtime_std::net::ClientConfig;
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A 5-server grid on loopback with a gateway in front of it.
struct Site {
    gateway: Gateway,
    grid: LocalGrid,
    _dir: tempfile::TempDir,
}

impl Site {
    fn start() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let grid = LocalGrid::start(dir.path(), 5).unwrap();
        let mut config = ClientConfig::new(b"convergence".to_vec(), b"lease secret".to_vec());
        config.upload.params.happy = 5;
        let pem = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/data/rsa-2048-fixture-keys.pem"
        ))
        .unwrap();
        let keys: SharedKeys = Arc::new(Mutex::new(Box::new(FixtureKeys::from_pem_bundle(&pem))));
        let gateway = Gateway::start(
            GatewayConfig {
                listen: "127.0.0.1:0".into(),
                workers: 4,
                ..Default::default()
            },
            grid.client(config),
            local_grid::entries(&grid.grid()),
            keys,
        )
        .unwrap();
        Site {
            gateway,
            grid,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gateway.local_addr())
    }

    fn get(&self, path: &str) -> Vec<u8> {
        let response = agent().get(&self.url(path)).call().unwrap();
        let mut body = Vec::new();
        response.into_reader().read_to_end(&mut body).unwrap();
        body
    }
}

/// Deterministic bytes that do not compress (and contain CRLFs and dashes).
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// An HTTP client that shows redirects instead of following them, and non-2xx answers as
/// answers.
fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .redirects(0)
        .timeout(Duration::from_secs(120))
        .build()
}

/// Status, headers we look at, and body of a request, whatever its status.
fn send(request: ureq::Request, body: &[u8]) -> (u16, Option<String>, String) {
    let response = match request.send_bytes(body) {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("request failed: {e}"),
    };
    let status = response.status();
    let location = response.header("Location").map(str::to_string);
    (status, location, response.into_string().unwrap())
}

fn multipart_body(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "----lafsTestBoundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, filename, value) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match filename {
            Some(f) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(value);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn post_form(
    site: &Site,
    path: &str,
    parts: &[(&str, Option<&str>, &[u8])],
) -> (u16, Option<String>, String) {
    let (content_type, body) = multipart_body(parts);
    send(
        agent()
            .post(&site.url(path))
            .set("Content-Type", &content_type),
        &body,
    )
}

/// The text of `<code id="cap">` in a result page.
fn cap_in(page: &str) -> String {
    let start = page.find("id=\"cap\">").expect("a cap on the page") + "id=\"cap\">".len();
    let end = start + page[start..].find('<').unwrap();
    page[start..end].to_string()
}

#[test]
fn form_uploads_over_http() {
    let site = Site::start();
    let small = b"hello\r\n--not a boundary\r\n".to_vec();
    let big = data(2_500_000, 7);

    // An unlinked upload, fields before and after the file; the answer is a page with the cap.
    for contents in [&small, &big] {
        let (status, _, page) = post_form(
            &site,
            "/uri?t=upload",
            &[
                ("t", None, b"upload"),
                ("file", Some("a file.bin"), contents),
                ("unknown", None, b"ignored"),
            ],
        );
        assert_eq!(status, 200, "{page}");
        let cap = cap_in(&page);
        assert!(cap.starts_with("URI:"), "{cap}");
        assert!(page.contains(&format!("href=\"/uri/{cap}\"")), "{page}");
        assert_eq!(&site.get(&format!("/uri/{cap}")), contents);
    }
    let upload = site
        .gateway
        .stats()
        .snapshot()
        .into_iter()
        .find(|(k, _)| k.name() == "upload")
        .map(|(_, s)| s)
        .unwrap();
    assert_eq!(upload.count, 2);
    assert_eq!(upload.bytes_in, (small.len() + big.len()) as u64);
    assert!(upload.round_trips > 0);

    // t=upload in the body only (a browser form posting to /uri), and when_done.
    let (status, location, _) = post_form(
        &site,
        "/uri",
        &[
            ("t", None, b"upload"),
            ("when_done", None, b"/done?cap=%(uri)s"),
            ("file", Some("x"), b"redirected"),
        ],
    );
    assert_eq!(status, 303);
    let location = location.unwrap();
    let quoted = location.strip_prefix("/done?cap=").unwrap();
    assert!(quoted.starts_with("URI%3A"), "{location}");
    let cap = percent_encoding::percent_decode_str(quoted)
        .decode_utf8()
        .unwrap()
        .to_string();
    assert_eq!(site.get(&format!("/uri/{cap}")), b"redirected");

    // format=MDMF makes a mutable file (given in the form, before the file).
    let (status, _, page) = post_form(
        &site,
        "/uri?t=upload",
        &[
            ("format", None, b"MDMF"),
            ("file", Some("m"), b"mutable one"),
        ],
    );
    assert_eq!(status, 200, "{page}");
    let mutable = cap_in(&page);
    assert!(mutable.starts_with("URI:MDMF:"), "{mutable}");
    assert_eq!(site.get(&format!("/uri/{mutable}")), b"mutable one");

    // Into a directory: named by the filename, or by a name field (given after the file).
    let dir = send(agent().post(&site.url("/uri?t=mkdir")), b"").2;
    assert!(dir.starts_with("URI:DIR2:"), "{dir}");
    let (status, _, page) = post_form(
        &site,
        &format!("/uri/{dir}?t=upload"),
        &[("file", Some("report.txt"), b"first")],
    );
    assert_eq!(status, 201, "{page}");
    assert_eq!(site.get(&format!("/uri/{dir}/report.txt")), b"first");
    let (status, _, page) = post_form(
        &site,
        &format!("/uri/{dir}/sub?t=upload"),
        &[
            ("file", Some("ignored.txt"), &big),
            ("name", None, b"chosen"),
        ],
    );
    assert_eq!(status, 201, "{page}");
    assert_eq!(site.get(&format!("/uri/{dir}/sub/chosen")), big);
    // Replacing answers 200; replace=false refuses.
    let (status, _, _) = post_form(
        &site,
        &format!("/uri/{dir}?t=upload"),
        &[("file", Some("report.txt"), b"second")],
    );
    assert_eq!(status, 200);
    assert_eq!(site.get(&format!("/uri/{dir}/report.txt")), b"second");
    let (status, _, _) = post_form(
        &site,
        &format!("/uri/{dir}?t=upload&replace=false"),
        &[("file", Some("report.txt"), b"third")],
    );
    assert_eq!(status, 409);
    // A mutable file in a directory is overwritten in place.
    let (_, _, page) = post_form(
        &site,
        &format!("/uri/{dir}?t=upload&format=SDMF"),
        &[("file", Some("notes"), b"v1")],
    );
    let notes = cap_in(&page);
    let (_, _, page) = post_form(
        &site,
        &format!("/uri/{dir}?t=upload"),
        &[("file", Some("notes"), b"v2")],
    );
    assert_eq!(cap_in(&page), notes);
    assert_eq!(site.get(&format!("/uri/{dir}/notes")), b"v2");

    // Bad forms are 400s with a reason.
    let (status, _, message) = post_form(&site, "/uri?t=upload", &[("t", None, b"upload")]);
    assert_eq!(status, 400);
    assert!(message.contains("no field named \"file\""), "{message}");
    let (status, _, message) = post_form(&site, "/uri?t=upload", &[("file", Some(""), b"")]);
    assert_eq!(status, 400);
    assert!(message.contains("no file was chosen"), "{message}");
    let (status, _, message) = send(
        agent()
            .post(&site.url("/uri?t=upload"))
            .set("Content-Type", "multipart/form-data"),
        b"--x\r\n",
    );
    assert_eq!(status, 400);
    assert!(message.contains("boundary"), "{message}");
    let (status, _, message) = post_form(
        &site,
        &format!("/uri/{dir}?t=upload"),
        &[("file", None, b"no name")],
    );
    assert_eq!(status, 400);
    assert!(message.contains("needs a name"), "{message}");
    // A body cut short: the client sends less than it announced and stops writing.
    let (content_type, body) = multipart_body(&[("file", Some("f"), &data(200_000, 3))]);
    let mut socket = TcpStream::connect(site.gateway.local_addr()).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        socket,
        "POST /uri?t=upload HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    socket.write_all(&body[..body.len() / 2]).unwrap();
    socket.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = String::new();
    let _ = socket.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("cut short"), "{answer}");
    // The gateway is still serving.
    assert!(String::from_utf8(site.get("/"))
        .unwrap()
        .contains("lafs gateway"));
}

/// Chromium's and chromedriver's paths, or why the browser test cannot run.
fn browser() -> Result<(), String> {
    for path in [CHROMIUM, CHROMEDRIVER] {
        if !Path::new(path).exists() {
            return Err(format!(
                "{path} is missing; install Debian's packages: apt-get install chromium chromium-driver"
            ));
        }
    }
    Ok(())
}

/// A chromedriver process, killed when dropped (with its browser session).
struct ChromeDriver {
    child: Child,
    base: String,
    session: Option<String>,
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let _ = agent()
                .delete(&format!("{}/session/{session}", self.base))
                .timeout(Duration::from_secs(10))
                .call();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ChromeDriver {
    fn start(log: &Path) -> ChromeDriver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let driver = ChromeDriver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            session: None,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = agent().get(&format!("{}/status", driver.base)).call() {
                let status: Value = serde_json::from_str(&r.into_string().unwrap()).unwrap();
                if status["value"]["ready"] == json!(true) {
                    return driver;
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A WebDriver command; its `value`, or a panic with WebDriver's error.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let request = agent().request(method, &url);
        let result = match body {
            Some(b) => request
                .set("Content-Type", "application/json")
                .send_string(&b.to_string()),
            None => request.call(),
        };
        let (ok, response) = match result {
            Ok(r) => (true, r),
            Err(ureq::Error::Status(_, r)) => (false, r),
            Err(e) => panic!("WebDriver {method} {path}: {e}"),
        };
        let text = response.into_string().unwrap();
        let value: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("WebDriver {method} {path}: not JSON: {text}"));
        assert!(ok, "WebDriver {method} {path} failed: {value}");
        value["value"].clone()
    }

    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let session = self.session.as_ref().expect("a session");
        self.call(method, &format!("/session/{session}{path}"), body)
    }

    fn new_session(&mut self, profile: &Path) {
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let value = self.call("POST", "/session", Some(capabilities));
        self.session = Some(
            value["sessionId"]
                .as_str()
                .expect("a session id")
                .to_string(),
        );
    }

    fn go(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({ "url": url })));
    }

    fn title(&self) -> String {
        self.session_call("GET", "/title", None)
            .as_str()
            .unwrap()
            .to_string()
    }

    fn current_url(&self) -> String {
        self.session_call("GET", "/url", None)
            .as_str()
            .unwrap()
            .to_string()
    }

    fn find_all(&self, css: &str) -> Vec<String> {
        self.session_call(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        )
        .as_array()
        .unwrap()
        .iter()
        // A found element is `{"element-6066-...": ID}`: its one value.
        .map(|e| {
            let reference = e.as_object().and_then(|o| o.values().next());
            let reference = reference.and_then(Value::as_str);
            reference
                .unwrap_or_else(|| panic!("not an element: {e}"))
                .to_string()
        })
        .collect()
    }

    /// The element `css` names, waiting up to 60 s for it (pages load after a click).
    fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(e) = self.find_all(css).into_iter().next() {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no element {css:?} at {}",
                self.current_url()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn text(&self, element: &str) -> String {
        self.session_call("GET", &format!("/element/{element}/text"), None)
            .as_str()
            .unwrap()
            .to_string()
    }

    fn attribute(&self, element: &str, name: &str) -> Option<String> {
        self.session_call("GET", &format!("/element/{element}/attribute/{name}"), None)
            .as_str()
            .map(str::to_string)
    }

    fn send_keys(&self, element: &str, text: &str) {
        self.session_call(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        );
    }

    fn click(&self, element: &str) {
        self.session_call(
            "POST",
            &format!("/element/{element}/click"),
            Some(json!({})),
        );
    }
}

#[test]
fn upload_and_open_in_headless_chromium() {
    if let Err(why) = browser() {
        if std::env::var("LAFS_REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!("LAFS_REQUIRE_BROWSER=1 but {why}");
        }
        eprintln!("skipped: {why}");
        return;
    }
    let started = Instant::now();
    let mut site = Site::start();
    let scratch = tempfile::tempdir().unwrap();
    let log = scratch.path().join("chromedriver.log");
    let mut driver = ChromeDriver::start(&log);
    let profile = scratch.path().join("profile");
    std::fs::create_dir(&profile).unwrap();
    driver.new_session(&profile);

    // The welcome page: title, every server listed and reachable.
    driver.go(&site.url("/"));
    assert_eq!(driver.title(), "lafs gateway");
    let table = driver.find("#servers");
    let rows = driver.find_all("#servers tr.server");
    assert_eq!(rows.len(), 5, "{}", driver.text(&table));
    for (row, server) in rows.iter().zip(site.grid.grid()) {
        let text = driver.text(row);
        assert!(text.contains(&server.address.to_string()), "{text}");
        assert_eq!(
            driver.attribute(row, "class").as_deref(),
            Some("server reachable"),
            "{text}"
        );
    }
    let space = driver.text(&driver.find("#grid-space"));
    assert!(space.ends_with(" 0 shares held"), "{space}");

    // Upload through the form: a file over the in-memory spool limit, with a space in its name.
    let contents = data(3 << 20, 11);
    let file = scratch.path().join("a file.bin");
    std::fs::write(&file, &contents).unwrap();
    let input = driver.find("#file");
    driver.send_keys(&input, &file.display().to_string());
    driver.click(&driver.find("#upload-button"));
    let cap = driver.text(&driver.find("code#cap"));
    assert!(cap.starts_with("URI:CHK:"), "{cap}");
    assert_eq!(driver.title(), "File uploaded");
    let link = driver.find("a#download");
    let href = driver.attribute(&link, "href").unwrap();
    assert!(href.ends_with(&format!("/uri/{cap}")), "{href}");
    assert!(
        site.get(&format!("/uri/{cap}")) == contents,
        "downloaded bytes differ"
    );

    // The cap box opens a cap: a directory, listed, with its own upload form.
    let dir = send(agent().post(&site.url("/uri?t=mkdir")), b"").2;
    driver.go(&site.url("/"));
    // The servers now hold the file's 10 shares and the directory's 10.
    let space = driver.text(&driver.find("#grid-space"));
    assert!(space.ends_with(" 20 shares held"), "{space}");
    let cap_box = driver.find("input#cap");
    driver.send_keys(&cap_box, &dir);
    driver.click(&driver.find("#open-button"));
    driver.find("form#upload-into");
    assert!(
        driver.title().starts_with("directory"),
        "{}",
        driver.title()
    );
    assert!(
        driver.current_url().ends_with(&format!("/uri/{dir}")),
        "{}",
        driver.current_url()
    );
    let small = scratch.path().join("notes.txt");
    std::fs::write(&small, b"written from a browser\n").unwrap();
    driver.send_keys(&driver.find("#file"), &small.display().to_string());
    driver.click(&driver.find("#upload-button"));
    // when_done brings the browser back to the listing, now with the file.
    let entry = driver.find("a.child");
    assert_eq!(driver.text(&entry), "notes.txt");
    assert_eq!(
        site.get(&format!("/uri/{dir}/notes.txt")),
        b"written from a browser\n"
    );

    // A stopped server shows as unreachable.
    site.grid.stop(4);
    driver.go(&site.url("/"));
    let rows = driver.find_all("#servers tr.server.unreachable");
    assert_eq!(rows.len(), 1);
    drop(driver);
    eprintln!("browser test took {:.1} s", started.elapsed().as_secs_f64());
}
