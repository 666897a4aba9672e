//! Tahoe's web API, the subset scripts and tools use (paths, query arguments and status codes as
//! in Tahoe's docs/frontends/webapi.rst):
//!
//! | request | does |
//! |---|---|
//! | `PUT /uri` | upload the body as an immutable file; `?format=SDMF\|MDMF` (or `mutable=true`) makes a mutable one; answers the cap |
//! | `PUT /uri?t=mkdir`, `POST /uri?t=mkdir` | a new empty directory (`format=` SDMF or MDMF); answers its write cap |
//! | `PUT /uri/FILECAP` | replace a mutable file's contents (write cap) |
//! | `GET /uri/CAP[/PATH]` | the file's bytes (one `Range: bytes=` range honoured: 206, or 416 past the end) |
//! | `GET /uri/CAP[/PATH]?t=json` | Tahoe's JSON description; directories list their children |
//! | `GET /uri/CAP[/PATH]?t=uri` | the cap |
//! | `GET /uri/DIRCAP[/PATH]` | an HTML listing of a directory |
//! | `PUT /uri/DIRCAP/PATH/NAME` | upload the body and link it (201 new, 200 replaced; `replace=false` gives 409); missing directories on the way are made; a writeable mutable file there is overwritten in place |
//! | `PUT /uri/DIRCAP/PATH/NAME?t=uri` | link the cap in the body |
//! | `PUT` or `POST /uri/DIRCAP/PATH/NAME?t=mkdir` | make the directory (and any missing on the way) |
//! | `POST /uri/DIRCAP/PATH?t=mkdir&name=NAME` | the same, Tahoe's form-style spelling |
//! | `POST /uri/DIRCAP/PATH?t=unlink&name=NAME` (or `t=delete`) | unlink a child |
//! | `POST /uri/DIRCAP/PATH?t=rename&from_name=A&to_name=B` | rename a child within a directory |
//! | `DELETE /uri/DIRCAP/PATH/NAME` | unlink; answers the unlinked cap |
//! | `GET /uri?uri=CAP` | redirect to `/uri/CAP` |
//! | `POST /uri?t=upload` (multipart form, field `file`) | upload from a browser form |
//! | `GET /statistics?t=json\|openmetrics` | counters, latency histograms, memory, CPU |
//! | `GET /` | the welcome page |

use std::io::{Read, Seek, Write};
use std::panic::AssertUnwindSafe;
use std::time::Instant;

use lafs_core::cap::Cap;
use lafs_core::crypto::key_source::KeySource;
use lafs_core::dirnode::ops::{show_path, DirOpError, LinkOptions};
use lafs_core::dirnode::{Child, ChildCap, EditError, Metadata, Overwrite};
use lafs_core::immutable::download::DownloadError;
use lafs_core::mutable::layout::MutableFormat;
use lafs_core::mutable::{PublishConfig, PublishError, RetrieveError};
use serde_json::{json, Value};
use tiny_http::{Method, Request, Response, StatusCode};

use super::stats::{OpKind, Outcome, Stats};
use super::web::{self, header, Reply, Target, WebError};
use super::{servers, welcome, GatewayConfig};
use crate::dir_paths;
use lafs_runtime_std::net::{ClientError, GridClient, ReadSeek, ServerEntry};

/// What the gateway knows of its grid, for pages.
#[derive(Debug, Clone)]
pub struct GridInfo {
    pub servers: Vec<ServerEntry>,
}

/// Bodies up to this size are kept in memory; larger ones are spooled to a file.
const IN_MEMORY_BODY: usize = 1 << 20;

/// Downloads up to this size are answered from memory; larger ones stream.
const IN_MEMORY_DOWNLOAD: u64 = 1 << 20;

/// What a handler decided: a finished reply, or a download to stream.
pub(super) enum Answer {
    Reply(Reply),
    Stream {
        cap: Cap,
        /// (offset, length) of the file.
        range: (u64, u64),
        size: u64,
    },
}

impl From<Reply> for Answer {
    fn from(r: Reply) -> Answer {
        Answer::Reply(r)
    }
}

/// What is counted for the request being served.
#[derive(Debug, Clone, Copy)]
pub(super) struct Account {
    pub(super) kind: OpKind,
    pub(super) outcome: Outcome,
}

/// One request thread, over the shared grid client (whose remembered directory states all
/// workers share, so an edit of a directory another worker just wrote costs one round trip).
pub struct Worker<'a> {
    grid: &'a GridClient,
    /// Keys for new mutable files and directories.
    keys: Box<dyn KeySource + 'a>,
    config: &'a GatewayConfig,
    stats: &'a Stats,
    info: &'a GridInfo,
}

impl std::fmt::Debug for Worker<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").finish_non_exhaustive()
    }
}

impl<'a> Worker<'a> {
    pub fn new(
        grid: &'a GridClient,
        keys: Box<dyn KeySource + 'a>,
        config: &'a GatewayConfig,
        stats: &'a Stats,
        info: &'a GridInfo,
    ) -> Worker<'a> {
        Worker {
            grid,
            keys,
            config,
            stats,
            info,
        }
    }

    /// The gateway's limits, for handlers outside this module.
    pub(super) fn config(&self) -> &'a GatewayConfig {
        self.config
    }

    /// Answer one request, whatever it holds.
    pub fn serve(&mut self, mut request: Request) {
        let started = Instant::now();
        let mut account = Account {
            kind: OpKind::Page,
            outcome: Outcome::default(),
        };
        let routed =
            std::panic::catch_unwind(AssertUnwindSafe(|| self.route(&mut request, &mut account)));
        let answer = match routed {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => Answer::Reply(Reply::error(&e)),
            Err(_) => {
                tracing::error!(url = request.url(), "gateway: a request handler panicked");
                Answer::Reply(Reply::error(&WebError::new(
                    500,
                    "internal error while serving this request (logged); nothing was changed \
                     unless a later read shows it",
                )))
            }
        };
        match answer {
            Answer::Reply(reply) => {
                account.outcome.ok = reply.status < 400;
                account.outcome.bytes_out += reply.body.len() as u64;
                respond(request, reply);
            }
            Answer::Stream { cap, range, size } => {
                account.outcome.ok = self.stream(request, &cap, range, size);
                account.outcome.bytes_out += range.1;
            }
        }
        self.stats
            .record(account.kind, started.elapsed(), account.outcome);
    }

    fn route(&mut self, request: &mut Request, account: &mut Account) -> Result<Answer, WebError> {
        let target = Target::parse(request.url())?;
        let method = request.method().clone();
        let segments: Vec<&str> = target.segments.iter().map(String::as_str).collect();
        match segments.as_slice() {
            [] => match method {
                Method::Get => Ok(welcome::page(self.grid, self.info, self.stats).into()),
                _ => Err(WebError::method_not_allowed(method.as_str(), "/")),
            },
            ["statistics"] => match method {
                Method::Get => Ok(self.statistics(&target).into()),
                _ => Err(WebError::method_not_allowed(method.as_str(), "/statistics")),
            },
            ["uri"] => self.uri_root(request, &method, &target, account),
            ["uri", cap, rest @ ..] => {
                let cap = parse_cap(cap)?;
                let path: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
                self.uri_path(request, &method, &target, cap, path, account)
            }
            _ => Err(WebError::not_found(format!(
                "nothing here: {}; the web API lives under /uri",
                request.url()
            ))),
        }
    }

    /// `/statistics`: the gateway's counters, plus each storage server's figures (asked for
    /// now, one round trip) in the machine-readable forms.
    fn statistics(&self, target: &Target) -> Reply {
        match target.t() {
            "openmetrics" => {
                let views = servers::survey(self.grid, &self.info.servers);
                Reply::bytes(
                    200,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    self.stats
                        .to_openmetrics(&servers::to_openmetrics(&views))
                        .into_bytes(),
                )
            }
            "json" => {
                let views = servers::survey(self.grid, &self.info.servers);
                let (reachable, used, available, held) = servers::totals(&views);
                let mut extra = serde_json::Map::new();
                extra.insert("storage.servers".into(), views.len().into());
                extra.insert("storage.servers_reachable".into(), reachable.into());
                extra.insert("storage.used_space".into(), used.into());
                extra.insert("storage.available_space".into(), available.into());
                extra.insert("storage.shares_held".into(), held.into());
                let mut json = self.stats.to_json(&extra);
                json["servers"] = servers::to_json(&views);
                Reply::json(&json)
            }
            _ => Reply::html(welcome::statistics_page(self.stats)),
        }
    }

    /// `/uri` itself: uploads and mkdir without a parent, and `?uri=` redirects.
    fn uri_root(
        &mut self,
        request: &mut Request,
        method: &Method,
        target: &Target,
        account: &mut Account,
    ) -> Result<Answer, WebError> {
        match (method, target.t()) {
            (Method::Put | Method::Post, "mkdir") => {
                account.kind = OpKind::Mkdir;
                let format = mutable_format(target)?.unwrap_or(MutableFormat::Sdmf);
                let (made, trips) = self.grid.metered(|g| g.mkdir(format, &mut self.keys));
                account.outcome.round_trips += trips;
                let cap = made.map_err(client_error)?;
                Ok(Reply::text(200, cap.to_string()).into())
            }
            // A browser form posts `t=upload` in its body, not in the URL.
            (Method::Post, "upload") | (Method::Post, "")
                if target.t() == "upload" || super::multipart::is_form_data(request) =>
            {
                account.kind = OpKind::Upload;
                welcome::form_upload(self, request, target, account)
            }
            (Method::Put, "") => {
                let cap = self.upload_body(request, target, account)?;
                Ok(Reply::text(200, cap.to_string()).into())
            }
            (Method::Get, _) => match target.arg("uri") {
                Some(cap) => {
                    let cap = parse_cap(cap)?;
                    Ok(Reply::text(303, "")
                        .with_header(
                            "Location",
                            format!("/uri/{}", web::escape_segment(&cap.to_string())),
                        )
                        .into())
                }
                None => Err(WebError::bad_request(
                    "GET /uri needs ?uri=CAP (or use /uri/CAP)",
                )),
            },
            (m, t) => Err(WebError::bad_request(format!(
                "{} /uri with t={t:?} is not something this gateway does",
                m.as_str()
            ))),
        }
    }

    /// Upload a request body as a new file: immutable unless `format=`/`mutable=` ask for a
    /// mutable one. Counts the operation in `account`.
    fn upload_body(
        &mut self,
        request: &mut Request,
        target: &Target,
        account: &mut Account,
    ) -> Result<Cap, WebError> {
        match mutable_format(target)? {
            Some(format) => {
                account.kind = OpKind::MutableCreate;
                let contents = web::read_small_body(request, self.config.max_mutable_upload)?;
                account.outcome.bytes_in = contents.len() as u64;
                self.create_mutable(format, contents, account)
            }
            None => {
                account.kind = OpKind::Upload;
                let body = self.spool(request)?;
                account.outcome.bytes_in = body.len;
                self.upload_spooled(body, account)
            }
        }
    }

    pub(super) fn create_mutable(
        &mut self,
        format: MutableFormat,
        contents: Vec<u8>,
        account_rt: &mut impl RoundTrips,
    ) -> Result<Cap, WebError> {
        let key = self
            .keys
            .next_key()
            .map_err(|e| WebError::new(503, format!("no key for a new mutable file: {e}")))?;
        let report = self
            .grid
            .create_mutable(format, key, contents, PublishConfig::default())
            .map_err(client_error)?;
        account_rt.add_round_trips(report.stats.round_trips);
        Ok(report.cap)
    }

    pub(super) fn upload_spooled(
        &mut self,
        mut body: Spooled,
        account_rt: &mut impl RoundTrips,
    ) -> Result<Cap, WebError> {
        let report = self
            .grid
            .upload_reader(body.len, body.reader(), &mut |_| {})
            .map_err(client_error)?;
        account_rt.add_round_trips(report.stats.round_trips);
        Ok(report.cap)
    }

    /// Read a request body of any size, keeping at most [`IN_MEMORY_BODY`] bytes in memory.
    pub(super) fn spool(&self, request: &mut Request) -> Result<Spooled, WebError> {
        spool_reader(request.as_reader(), self.config)
    }

    /// `/uri/CAP[/PATH]`
    fn uri_path(
        &mut self,
        request: &mut Request,
        method: &Method,
        target: &Target,
        root: Cap,
        path: Vec<String>,
        account: &mut Account,
    ) -> Result<Answer, WebError> {
        match method {
            Method::Get | Method::Head => self.get(request, target, &root, &path, account),
            Method::Put => self.put(request, target, &root, path, account),
            Method::Post => self.post(request, target, &root, path, account),
            Method::Delete => {
                account.kind = OpKind::Unlink;
                if path.is_empty() {
                    return Err(WebError::bad_request(
                        "DELETE needs a child name: /uri/DIRCAP/NAME (an object itself cannot be deleted, only unlinked)",
                    ));
                }
                need_directory(&root)?;
                let removed = dir_op(self.grid, account, |g| g.unlink(&root, &path))?;
                Ok(Reply::text(200, child_cap_text(&removed.cap)).into())
            }
            m => Err(WebError::method_not_allowed(m.as_str(), "/uri/CAP")),
        }
    }

    fn get(
        &mut self,
        request: &Request,
        target: &Target,
        root: &Cap,
        path: &[String],
        account: &mut Account,
    ) -> Result<Answer, WebError> {
        account.kind = OpKind::List;
        let found = if path.is_empty() {
            ChildFound {
                cap: ChildCap::Known(root.clone()),
                metadata: None,
            }
        } else {
            need_directory(root)?;
            let f = dir_op(self.grid, account, |g| g.lookup(root, path))?;
            ChildFound {
                cap: f.cap,
                metadata: f.metadata,
            }
        };
        let cap = match &found.cap {
            ChildCap::Known(cap) => cap.clone(),
            ChildCap::Unknown(_) => {
                return match target.t() {
                    "json" => Ok(Reply::json(&node_json(&found.cap, found.metadata.as_ref(), None)).into()),
                    _ => Err(WebError::bad_request(
                        "this child's cap is of a kind this gateway does not know, so it cannot be read",
                    )),
                }
            }
        };
        match target.t() {
            "json" => {
                let children = if cap.is_directory() {
                    let dir = dir_op(self.grid, account, |g| g.list_directory(&cap))?;
                    let mut map = serde_json::Map::new();
                    for (name, child) in dir.list() {
                        map.insert(
                            name.to_string(),
                            node_json(&child.cap, Some(&child.metadata), None),
                        );
                    }
                    Some(Value::Object(map))
                } else {
                    None
                };
                Ok(Reply::json(&node_json(&found.cap, found.metadata.as_ref(), children)).into())
            }
            "uri" => Ok(Reply::text(200, cap.to_string()).into()),
            "readonly-uri" => Ok(Reply::text(
                200,
                cap.read_only().map(|c| c.to_string()).unwrap_or_default(),
            )
            .into()),
            "" if cap.is_directory() => {
                let dir = dir_op(self.grid, account, |g| g.list_directory(&cap))?;
                Ok(Reply::html(welcome::directory_page(&cap, &dir)).into())
            }
            "" => self.download(request, &cap, account),
            other => Err(WebError::bad_request(format!(
                "GET with t={other:?} is not supported"
            ))),
        }
    }

    fn download(
        &mut self,
        request: &Request,
        cap: &Cap,
        account: &mut Account,
    ) -> Result<Answer, WebError> {
        let range_header = web::request_header(request, "Range");
        match cap {
            Cap::Lit { data } => {
                account.kind = OpKind::Download;
                let size = data.len() as u64;
                let range = web::parse_range(range_header, size)?;
                let (offset, length) = range.unwrap_or((0, size));
                let body = data[offset as usize..(offset + length) as usize].to_vec();
                Ok(ranged_reply(body, range, size).into())
            }
            Cap::ChkRead { size, .. } => {
                account.kind = OpKind::Download;
                let range = web::parse_range(range_header, *size)?;
                let span = range.unwrap_or((0, *size));
                if span.1 <= IN_MEMORY_DOWNLOAD {
                    let mut body = Vec::with_capacity(span.1 as usize);
                    let rt = download_into(self.grid, cap, span, &mut body)?;
                    account.outcome.round_trips += rt;
                    return Ok(ranged_reply(body, range, *size).into());
                }
                Ok(Answer::Stream {
                    cap: cap.clone(),
                    range: span,
                    size: *size,
                })
            }
            c if c.is_verify_cap() => Err(WebError::bad_request(
                "a verify cap cannot read a file's contents (it can only check its shares)",
            )),
            c if c.is_mutable() => {
                account.kind = OpKind::MutableRead;
                // The size is known only after the read; ask for the whole file, or the range
                // with an open end resolved after.
                let wanted = range_header.and_then(parse_open_range);
                let (bytes, report) = self.grid.read_mutable(c, wanted).map_err(client_error)?;
                account.outcome.round_trips += u64::from(report.stats.round_trips);
                let size = report.file_size;
                let range = web::parse_range(range_header, size)?;
                let body = match (range, wanted) {
                    // The read was already of the range.
                    (Some(_), Some(_)) => bytes,
                    (Some((offset, length)), None) => {
                        bytes[offset as usize..(offset + length) as usize].to_vec()
                    }
                    (None, _) => bytes,
                };
                Ok(ranged_reply(body, range, size).into())
            }
            _ => Err(WebError::bad_request(
                "this cap names nothing that can be downloaded",
            )),
        }
    }

    /// Stream a large download: the grid download runs on a helper thread and hands segments
    /// through a bounded channel to the response writer. Returns whether it all went out.
    fn stream(&self, request: Request, cap: &Cap, range: (u64, u64), size: u64) -> bool {
        let grid = self.grid;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
        let partial = range != (0, size);
        std::thread::scope(|scope| {
            let producer = scope.spawn(move || {
                let mut pipe = PipeWriter { tx };
                download_into(grid, cap, range, &mut pipe)
            });
            let mut response = Response::new(
                StatusCode(if partial { 206 } else { 200 }),
                vec![
                    header("Content-Type", "application/octet-stream"),
                    header("Accept-Ranges", "bytes"),
                ],
                PipeReader {
                    rx,
                    chunk: Vec::new(),
                    at: 0,
                },
                Some(range.1 as usize),
                None,
            );
            if partial {
                response.add_header(header(
                    "Content-Range",
                    &format!("bytes {}-{}/{size}", range.0, range.0 + range.1 - 1),
                ));
            }
            let sent = request.respond(response);
            match producer.join() {
                Ok(Ok(_)) => sent.is_ok(),
                Ok(Err(e)) => {
                    tracing::warn!(status = e.status, error = %e.message, "gateway: download failed mid-stream");
                    false
                }
                Err(_) => {
                    tracing::error!("gateway: download thread panicked");
                    false
                }
            }
        })
    }

    fn put(
        &mut self,
        request: &mut Request,
        target: &Target,
        root: &Cap,
        path: Vec<String>,
        account: &mut Account,
    ) -> Result<Answer, WebError> {
        if path.is_empty() {
            // PUT /uri/FILECAP: new contents for a mutable file.
            account.kind = OpKind::MutableUpdate;
            if root.is_directory() || !root.is_mutable() || root.is_readonly() {
                return Err(WebError::bad_request(
                    "PUT /uri/CAP replaces a mutable file's contents and needs its write cap; to upload a new file use PUT /uri",
                ));
            }
            let contents = web::read_small_body(request, self.config.max_mutable_upload)?;
            account.outcome.bytes_in = contents.len() as u64;
            let report = self
                .grid
                .update_mutable(root, contents, None)
                .map_err(client_error)?;
            account.outcome.round_trips += u64::from(report.stats.round_trips);
            return Ok(Reply::text(200, root.to_string()).into());
        }
        need_directory(root)?;
        let overwrite = replace_arg(target)?;
        match target.t() {
            "uri" => {
                account.kind = OpKind::Link;
                let body = web::read_small_body(request, self.config.max_small_body)?;
                let text = std::str::from_utf8(&body)
                    .map_err(|_| WebError::bad_request("the body must be a cap (UTF-8 text)"))?
                    .trim();
                let child = parse_cap(text)?;
                let linked = self.link_making_parents(root, &path, &child, overwrite, account)?;
                let status = if linked.replaced.is_some() { 200 } else { 201 };
                Ok(Reply::text(status, child.to_string()).into())
            }
            "mkdir" => self.mkdir_at(root, &path, target, account),
            "" => self.put_file(request, target, root, &path, overwrite, account),
            other => Err(WebError::bad_request(format!(
                "PUT with t={other:?} is not supported"
            ))),
        }
    }

    fn mkdir_at(
        &mut self,
        root: &Cap,
        path: &[String],
        target: &Target,
        account: &mut Account,
    ) -> Result<Answer, WebError> {
        account.kind = OpKind::Mkdir;
        let format = mutable_format(target)?.unwrap_or(MutableFormat::Sdmf);
        // An existing directory there is the answer (Tahoe makes no change).
        match dir_op(self.grid, account, |g| dir_paths::peek(g, root, path)) {
            Ok(Some(Child {
                cap: ChildCap::Known(cap @ Cap::Directory(_)),
                ..
            })) => return Ok(Reply::text(200, cap.to_string()).into()),
            Ok(Some(_)) => {
                return Err(WebError::new(
                    409,
                    format!("{} is a file, not a directory", show_path(path)),
                ))
            }
            Ok(None) => {}
            Err(e) => return Err(e),
        }
        let cap = dir_op(self.grid, account, |g| {
            g.mkdir_at(root, path, format, true, &mut self.keys)
        })?;
        Ok(Reply::text(201, cap.to_string()).into())
    }

    /// `PUT /uri/DIRCAP/PATH/NAME`: upload and link, or overwrite a writeable mutable file in
    /// place.
    fn put_file(
        &mut self,
        request: &mut Request,
        target: &Target,
        root: &Cap,
        path: &[String],
        overwrite: Overwrite,
        account: &mut Account,
    ) -> Result<Answer, WebError> {
        let format = mutable_format(target)?;
        let body = Body::Request(request);
        let (cap, status) = self.write_at(root, path, (overwrite, format), body, account)?;
        Ok(Reply::text(status, cap.to_string()).into())
    }

    /// Write a file at `path` below `root` from `body`, as Tahoe does: a writeable mutable file
    /// already there is overwritten in place (unless `overwrite` is `No`); else a new mutable
    /// file (`format`) or immutable file is made and linked, making missing directories on the
    /// way. Returns the file's cap and the status: 201 for a new link, 200 for a replaced one.
    pub(super) fn write_at(
        &mut self,
        root: &Cap,
        path: &[String],
        (overwrite, format): (Overwrite, Option<MutableFormat>),
        body: Body<'_>,
        account: &mut Account,
    ) -> Result<(Cap, u16), WebError> {
        let existing = dir_op(self.grid, account, |g| dir_paths::peek(g, root, path))?;
        if let Some(Child {
            cap: ChildCap::Known(cap),
            ..
        }) = &existing
        {
            if cap.is_mutable()
                && !cap.is_directory()
                && !cap.is_readonly()
                && overwrite != Overwrite::No
            {
                account.kind = OpKind::MutableUpdate;
                let contents = self.small_body(body, account)?;
                let report = self
                    .grid
                    .update_mutable(cap, contents, None)
                    .map_err(client_error)?;
                account.outcome.round_trips += u64::from(report.stats.round_trips);
                return Ok((cap.clone(), 200));
            }
        }
        let status = if existing.is_some() { 200 } else { 201 };
        if let Some(format) = format {
            account.kind = OpKind::MutableCreate;
            let contents = self.small_body(body, account)?;
            let cap = self.create_mutable(format, contents, account)?;
            let linked = self.link_making_parents(root, path, &cap, overwrite, account)?;
            let status = if linked.replaced.is_some() {
                200
            } else {
                status
            };
            return Ok((cap, status));
        }
        account.kind = OpKind::Upload;
        let mut body = match body {
            Body::Request(request) => self.spool(request)?,
            Body::Spooled(spooled) => spooled,
        };
        account.outcome.bytes_in = body.len;
        let source = (body.len, body.reader());
        let (report, replaced) = dir_op(self.grid, account, |g| {
            dir_paths::put_file(g, root, path, source, overwrite, true, &mut self.keys)
        })?;
        let status = if replaced.is_some() { 200 } else { status };
        Ok((report.cap, status))
    }

    /// A mutable file's new contents from `body`, within the gateway's limit.
    fn small_body(&self, body: Body<'_>, account: &mut Account) -> Result<Vec<u8>, WebError> {
        let limit = self.config.max_mutable_upload;
        let contents = match body {
            Body::Request(request) => web::read_small_body(request, limit)?,
            Body::Spooled(spooled) => spooled.into_small(limit)?,
        };
        account.outcome.bytes_in = contents.len() as u64;
        Ok(contents)
    }

    /// Link `cap` at `path` below `root`, making missing directories on the way (SDMF), as
    /// Tahoe's web API does for `PUT /uri/DIRCAP/a/b/name`.
    fn link_making_parents(
        &mut self,
        root: &Cap,
        path: &[String],
        cap: &Cap,
        overwrite: Overwrite,
        account: &mut Account,
    ) -> Result<lafs_core::dirnode::ops::Linked, WebError> {
        let options = LinkOptions::put(overwrite, true);
        let child = ChildCap::Known(cap.clone());
        dir_op(self.grid, account, |g| {
            g.link(root, path, child, options, &mut self.keys)
        })
    }

    fn post(
        &mut self,
        request: &mut Request,
        target: &Target,
        root: &Cap,
        path: Vec<String>,
        account: &mut Account,
    ) -> Result<Answer, WebError> {
        need_directory(root)?;
        let name_arg = || {
            target
                .arg("name")
                .filter(|n| !n.is_empty())
                .ok_or_else(|| WebError::bad_request("this operation needs name=CHILDNAME"))
        };
        let with_name = |name: &str| {
            let mut p = path.clone();
            p.push(name.to_string());
            p
        };
        match target.t() {
            "mkdir" => match target.arg("name") {
                Some(name) if !name.is_empty() => {
                    self.mkdir_at(root, &with_name(name), target, account)
                }
                _ => self.mkdir_at(root, &path, target, account),
            },
            "unlink" | "delete" => {
                account.kind = OpKind::Unlink;
                let name = with_name(name_arg()?);
                let removed = dir_op(self.grid, account, |g| g.unlink(root, &name))?;
                Ok(Reply::text(200, child_cap_text(&removed.cap)).into())
            }
            "rename" => {
                account.kind = OpKind::Link;
                let from = target
                    .arg("from_name")
                    .ok_or_else(|| WebError::bad_request("t=rename needs from_name="))?;
                let to = target
                    .arg("to_name")
                    .ok_or_else(|| WebError::bad_request("t=rename needs to_name="))?;
                let overwrite = replace_arg(target)?;
                let (from, to) = (with_name(from), with_name(to));
                dir_op(self.grid, account, |g| {
                    g.move_link((root, &from), (root, &to), overwrite)
                })?;
                Ok(Reply::text(200, "OK").into())
            }
            "upload" | "" if target.t() == "upload" || super::multipart::is_form_data(request) => {
                account.kind = OpKind::Upload;
                welcome::form_upload_into(self, request, target, root, &path, account)
            }
            other => Err(WebError::bad_request(format!(
                "POST with t={other:?} is not supported"
            ))),
        }
    }
}

/// A path lookup's result.
struct ChildFound {
    cap: ChildCap,
    metadata: Option<Metadata>,
}

/// Where an operation adds its round trips.
pub(super) trait RoundTrips {
    fn add_round_trips(&mut self, n: u32);
}

impl RoundTrips for Account {
    fn add_round_trips(&mut self, n: u32) {
        self.outcome.round_trips += u64::from(n);
    }
}

impl RoundTrips for u64 {
    fn add_round_trips(&mut self, n: u32) {
        *self += u64::from(n);
    }
}

/// Run directory operations through the grid client, counting their round trips.
fn dir_op<T>(
    grid: &GridClient,
    account: &mut Account,
    f: impl FnOnce(&GridClient) -> Result<T, ClientError>,
) -> Result<T, WebError> {
    let (done, trips) = grid.metered(f);
    account.outcome.round_trips += trips;
    done.map_err(client_error)
}

/// Where a write's bytes come from: still in the request (read once the write's kind is
/// known) or already spooled (a form's file field).
pub(super) enum Body<'r> {
    Request(&'r mut Request),
    Spooled(Spooled),
}

/// A request body read to its end: in memory if small, else in a temporary file.
#[derive(Debug)]
pub struct Spooled {
    pub len: u64,
    source: SpoolSource,
}

#[derive(Debug)]
enum SpoolSource {
    Memory(std::io::Cursor<Vec<u8>>),
    File(std::fs::File),
}

impl Spooled {
    pub fn reader(&mut self) -> &mut dyn ReadSeek {
        match &mut self.source {
            SpoolSource::Memory(c) => c,
            SpoolSource::File(f) => f,
        }
    }

    /// The whole body in memory, if it is at most `limit` bytes (413 otherwise).
    pub fn into_small(mut self, limit: u64) -> Result<Vec<u8>, WebError> {
        if self.len > limit {
            return Err(web::too_large(limit));
        }
        let mut contents = Vec::with_capacity(self.len as usize);
        self.reader()
            .read_to_end(&mut contents)
            .map_err(|e| WebError::new(500, format!("could not read the spooled upload: {e}")))?;
        Ok(contents)
    }
}

/// Read `reader` to its end, spooling to a temporary file past [`IN_MEMORY_BODY`] bytes and
/// refusing more than the configured immutable limit (413).
pub fn spool_reader(reader: &mut dyn Read, config: &GatewayConfig) -> Result<Spooled, WebError> {
    let limit = config.max_immutable_upload;
    let read_error =
        |e: std::io::Error| WebError::bad_request(format!("could not read the request body: {e}"));
    let mut head = Vec::new();
    reader
        .take(IN_MEMORY_BODY as u64 + 1)
        .read_to_end(&mut head)
        .map_err(read_error)?;
    if head.len() as u64 > limit {
        return Err(web::too_large(limit));
    }
    if head.len() <= IN_MEMORY_BODY {
        return Ok(Spooled {
            len: head.len() as u64,
            source: SpoolSource::Memory(std::io::Cursor::new(head)),
        });
    }
    let spool_error = |e: std::io::Error| {
        WebError::new(
            507,
            format!("could not spool the upload to a temporary file: {e}"),
        )
    };
    let mut file = match &config.spool_dir {
        Some(dir) => tempfile::tempfile_in(dir),
        None => tempfile::tempfile(),
    }
    .map_err(spool_error)?;
    file.write_all(&head).map_err(spool_error)?;
    let mut len = head.len() as u64;
    drop(head);
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e)),
        };
        len += n as u64;
        if len > limit {
            return Err(web::too_large(limit));
        }
        file.write_all(&buf[..n]).map_err(spool_error)?;
    }
    file.rewind().map_err(spool_error)?;
    Ok(Spooled {
        len,
        source: SpoolSource::File(file),
    })
}

/// Download `span` (offset, length) of the immutable file `cap` into `out`, fetching only the
/// segments that cover it; the round trips it took.
fn download_into(
    grid: &GridClient,
    cap: &Cap,
    span: (u64, u64),
    out: &mut dyn Write,
) -> Result<u64, WebError> {
    let report = grid
        .download_range(cap, span.0, span.1, out, &mut |_| {})
        .map_err(client_error)?;
    Ok(u64::from(report.stats.round_trips))
}

/// The writing end of a bounded channel of chunks.
struct PipeWriter {
    tx: std::sync::mpsc::SyncSender<Vec<u8>>,
}

impl Write for PipeWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.tx.send(buf.to_vec()).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
        })?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The reading end: yields the chunks in order; an early end (the download failed) is an
/// error, so the response is cut short rather than ended cleanly.
struct PipeReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Write a finished reply (the client having gone away is not our problem).
pub(super) fn respond(request: Request, reply: Reply) {
    let mut response = Response::from_data(reply.body)
        .with_status_code(StatusCode(reply.status))
        .with_header(header("Content-Type", reply.content_type));
    for (name, value) in &reply.headers {
        response.add_header(header(name, value));
    }
    if let Err(e) = request.respond(response) {
        tracing::debug!(error = %e, "gateway: could not send a reply");
    }
}

/// 200 with the whole file, or 206 with `Content-Range` for a range.
fn ranged_reply(body: Vec<u8>, range: Option<(u64, u64)>, size: u64) -> Reply {
    let reply = match range {
        Some((offset, length)) => Reply::bytes(206, "application/octet-stream", body).with_header(
            "Content-Range",
            format!("bytes {}-{}/{size}", offset, offset + length - 1),
        ),
        None => Reply::bytes(200, "application/octet-stream", body),
    };
    reply.with_header("Accept-Ranges", "bytes".into())
}

/// A `bytes=a-b` range with both ends given, as (offset, length), for reads that learn the
/// size only afterwards. Other forms return `None` (read everything, cut after).
fn parse_open_range(h: &str) -> Option<(u64, u64)> {
    let spec = h.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
    (b >= a).then(|| (a, b - a + 1))
}

pub(super) fn parse_cap(text: &str) -> Result<Cap, WebError> {
    Cap::parse(text).map_err(|e| WebError::bad_request(format!("not a valid cap: {e}")))
}

fn need_directory(cap: &Cap) -> Result<(), WebError> {
    if cap.is_directory() {
        Ok(())
    } else {
        Err(WebError::bad_request(format!(
            "a {} cap is not a directory, so it has no children",
            cap.kind_name()
        )))
    }
}

fn child_cap_text(cap: &ChildCap) -> String {
    let bytes = cap
        .write_uri()
        .or_else(|| cap.read_uri())
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `format=SDMF|MDMF|CHK` (any case) or `mutable=true`: `Some` for a mutable format.
pub(super) fn mutable_format(target: &Target) -> Result<Option<MutableFormat>, WebError> {
    match target.arg("format").map(str::to_ascii_uppercase).as_deref() {
        Some("SDMF") => Ok(Some(MutableFormat::Sdmf)),
        Some("MDMF") => Ok(Some(MutableFormat::Mdmf)),
        Some("CHK") => Ok(None),
        Some(other) => Err(WebError::bad_request(format!(
            "unknown format: {other:?}; use CHK, SDMF or MDMF"
        ))),
        None if target.flag("mutable", false)? => Ok(Some(MutableFormat::Sdmf)),
        None => Ok(None),
    }
}

/// `replace=true|false|only-files` (default true).
pub(super) fn replace_arg(target: &Target) -> Result<Overwrite, WebError> {
    match target.arg("replace") {
        None => Ok(Overwrite::Yes),
        Some(v) if v.eq_ignore_ascii_case("only-files") => Ok(Overwrite::OnlyFiles),
        Some(v) => match web::parse_bool(v) {
            Some(true) => Ok(Overwrite::Yes),
            Some(false) => Ok(Overwrite::No),
            None => Err(WebError::bad_request(format!(
                "invalid replace= argument: {v:?}"
            ))),
        },
    }
}

/// Tahoe's format name for a file or directory.
fn format_name(cap: &Cap) -> &'static str {
    match cap.file_cap() {
        Cap::Lit { .. } => "LIT",
        Cap::ChkRead { .. } | Cap::ChkVerify { .. } => "CHK",
        Cap::SskWrite { .. } | Cap::SskRead { .. } | Cap::SskVerify { .. } => "SDMF",
        _ => "MDMF",
    }
}

/// Tahoe's `t=json` description: `[type, {rw_uri?, ro_uri, verify_uri?, size?, mutable,
/// format, metadata?, children?}]`.
pub(super) fn node_json(
    cap: &ChildCap,
    metadata: Option<&Metadata>,
    children: Option<Value>,
) -> Value {
    let text = |b: Option<Vec<u8>>| b.map(|b| String::from_utf8_lossy(&b).into_owned());
    let mut info = serde_json::Map::new();
    if let Some(rw) = text(cap.write_uri()) {
        info.insert("rw_uri".into(), rw.into());
    }
    if let Some(ro) = text(cap.read_uri()) {
        info.insert("ro_uri".into(), ro.into());
    }
    let kind = match cap {
        ChildCap::Known(c) => {
            if let Some(v) = c.verify_cap() {
                info.insert("verify_uri".into(), v.to_string().into());
            }
            match c.file_cap() {
                Cap::ChkRead { size, .. } if !c.is_directory() => {
                    info.insert("size".into(), (*size).into());
                }
                Cap::Lit { data } if !c.is_directory() => {
                    info.insert("size".into(), (data.len() as u64).into());
                }
                _ => {}
            }
            info.insert("mutable".into(), c.is_mutable().into());
            info.insert("format".into(), format_name(c).into());
            if c.is_directory() {
                "dirnode"
            } else {
                "filenode"
            }
        }
        ChildCap::Unknown(_) => "unknown",
    };
    if let Some(m) = metadata {
        let value = serde_json::from_str::<Value>(&m.to_python_json()).unwrap_or(Value::Null);
        info.insert("metadata".into(), value);
    }
    if let Some(children) = children {
        info.insert("children".into(), children);
    }
    json!([kind, info])
}

/// Tahoe's status codes for what can go wrong in a directory operation.
fn dir_error(e: &DirOpError, message: String) -> WebError {
    match e {
        DirOpError::Read {
            source: RetrieveError::NoShares { .. } | RetrieveError::NotEnoughShares { .. },
            ..
        }
        | DirOpError::Download {
            source: DownloadError::NotEnoughShares { .. },
            ..
        } => WebError::new(410, message),
        DirOpError::NotFound { .. } => WebError::not_found(message),
        DirOpError::Exists { .. } | DirOpError::TooManyConflicts { .. } => {
            WebError::new(409, message)
        }
        DirOpError::Edit { source, .. } => match source {
            EditError::NoSuchChild { .. } => WebError::not_found(message),
            EditError::ExistingChild { .. } | EditError::ExistingDirectory { .. } => {
                WebError::new(409, message)
            }
            _ => WebError::bad_request(message),
        },
        DirOpError::Publish {
            source: PublishError::Conflict { .. },
            ..
        } => WebError::new(409, message),
        DirOpError::Read { .. }
        | DirOpError::Download { .. }
        | DirOpError::Publish { .. }
        | DirOpError::Create { .. }
        | DirOpError::NoKey { .. } => WebError::new(503, message),
        DirOpError::Malformed { .. } => WebError::new(500, message),
        _ => WebError::bad_request(message),
    }
}

/// Tahoe's status codes for grid failures: 410 Gone when a file cannot be recovered.
pub(super) fn client_error(e: ClientError) -> WebError {
    let message = e.to_string();
    match &e {
        ClientError::Dir(dir) => dir_error(dir, message),
        ClientError::Download(DownloadError::NotEnoughShares { .. })
        | ClientError::Retrieve(
            RetrieveError::NoShares { .. } | RetrieveError::NotEnoughShares { .. },
        ) => WebError::new(410, message),
        ClientError::Download(DownloadError::BadCap(_) | DownloadError::CapMismatch(_))
        | ClientError::NotImmutableFile(_)
        | ClientError::NotMutableFile(_)
        | ClientError::Publish(PublishError::ReadOnly | PublishError::NoSigningKey) => {
            WebError::bad_request(message)
        }
        ClientError::Publish(PublishError::Conflict { .. }) => WebError::new(409, message),
        ClientError::Unreachable(_) | ClientError::Upload(_) | ClientError::Publish(_) => {
            WebError::new(503, message)
        }
        _ => WebError::new(500, message),
    }
}
