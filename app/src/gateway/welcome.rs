//! Pages for people: the welcome page at `/` (grid status, an upload form, a cap box), HTML
//! directory listings and the statistics page, plus the browser form uploads they use.

use std::fmt::Write as _;

use indicatif::HumanBytes;
use lafs_core::cap::Cap;
use lafs_core::dirnode::Directory;
use lafs_core::server_status::ServerFigures;
use tiny_http::Request;

use super::api::{
    mutable_format, replace_arg, spool_reader, Account, Answer, Body, GridInfo, Spooled, Worker,
};
use super::multipart::{self, Multipart};
use super::servers::{self, ServerView};
use super::stats::{OpKind, Stats};
use super::web::{self, escape_html, escape_segment, Reply, Target, WebError};
use super::GatewayConfig;
use lafs_runtime_std::net::GridClient;

const STYLE: &str = "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}\
table{border-collapse:collapse}td,th{padding:.2em .8em;text-align:left;border-bottom:1px solid #ddd}\
code{word-break:break-all}input[type=text]{width:40em}";

fn page_start(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>{STYLE}</style></head><body><h1>{t}</h1>\n",
        t = escape_html(title)
    )
}

/// `/`: the grid's servers, an upload form and a box to open a cap.
pub fn page(grid: &GridClient, info: &GridInfo, stats: &Stats) -> Reply {
    let mut html = page_start("lafs gateway");
    let views = servers::survey(grid, &info.servers);
    let (reachable, used, available, held) = servers::totals(&views);
    let _ = writeln!(
        html,
        "<h2>Storage servers ({reachable} of {} reachable)</h2>\n\
         <p id=\"grid-space\">{} used, {} available, {held} shares held</p>\n\
         <table id=\"servers\">{}",
        views.len(),
        HumanBytes(used),
        HumanBytes(available),
        server_header()
    );
    for server in &views {
        html.push_str(&server_row(server));
    }
    html.push_str("</table>\n");
    html.push_str(
        "<h2>Upload a file</h2>\n<form id=\"upload\" action=\"/uri?t=upload\" method=\"POST\" \
         enctype=\"multipart/form-data\"><input type=\"hidden\" name=\"t\" value=\"upload\">\
         <input type=\"file\" name=\"file\" id=\"file\"> <select name=\"format\" id=\"format\">\
         <option value=\"CHK\" selected>immutable</option><option value=\"SDMF\">mutable (SDMF)</option>\
         <option value=\"MDMF\">mutable (MDMF)</option></select> <input type=\"submit\" value=\"Upload\" \
         id=\"upload-button\"></form>\n",
    );
    html.push_str(
        "<h2>Open a cap</h2>\n<form id=\"open\" action=\"/uri\" method=\"GET\">\
         <input type=\"text\" name=\"uri\" id=\"cap\" placeholder=\"URI:...\"> \
         <input type=\"submit\" value=\"Open\" id=\"open-button\"></form>\n",
    );
    let served: u64 = stats
        .snapshot()
        .iter()
        .filter(|(k, _)| **k != OpKind::Page)
        .map(|(_, s)| s.count)
        .sum();
    let _ = writeln!(
        html,
        "<p>{served} operations served; <a href=\"/statistics\">statistics</a> \
         (<a href=\"/statistics?t=json\">JSON</a>, \
         <a href=\"/statistics?t=openmetrics\">OpenMetrics</a>)</p></body></html>"
    );
    Reply::html(html)
}

/// The servers table's header row; one `<th>` per cell of [`server_row`].
fn server_header() -> String {
    "<tr><th>id</th><th>address</th><th>connection</th><th>space used</th>\
     <th>space available</th><th>shares held</th></tr>\n"
        .to_string()
}

/// One storage server's row in the welcome page's table (the row's class is its connection
/// state, for styling and tests). Add a column here and in [`server_header`].
fn server_row(server: &ServerView) -> String {
    let figure = |get: fn(&ServerFigures) -> String| server.figures().map_or(String::new(), get);
    format!(
        "<tr class=\"server {state}\"><td><code>{id}</code></td><td>{addr}</td>\
         <td class=\"connection\">{state}</td><td class=\"used\">{used}</td>\
         <td class=\"available\">{available}</td><td class=\"shares\">{held}</td></tr>\n",
        id = server.id,
        addr = escape_html(&server.address),
        state = server.state_name(),
        used = figure(|f| HumanBytes(f.used_space).to_string()),
        available = figure(|f| HumanBytes(f.available_space).to_string()),
        held = figure(|f| f.shares_held.to_string()),
    )
}

/// `/statistics`: the counters as a table.
pub fn statistics_page(stats: &Stats) -> String {
    let mut html = page_start("lafs gateway statistics");
    html.push_str(
        "<table><tr><th>operation</th><th>count</th><th>failed</th><th>bytes in</th>\
         <th>bytes out</th><th>round trips</th><th>p50 &le; (&micro;s)</th></tr>\n",
    );
    for (kind, s) in stats.snapshot() {
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            kind.name(),
            s.count,
            s.failures,
            s.bytes_in,
            s.bytes_out,
            s.round_trips,
            s.latency
                .quantile_bound_us(0.5)
                .map_or_else(|| "-".to_string(), |v| v.to_string())
        );
    }
    html.push_str("</table></body></html>\n");
    html
}

/// `GET /uri/DIRCAP`: the children, each linked by its cap.
pub fn directory_page(cap: &Cap, dir: &Directory) -> String {
    let mut html = page_start(&format!("directory ({})", cap.kind_name()));
    html.push_str("<table><tr><th>name</th><th>kind</th><th>size</th></tr>\n");
    for (name, child) in dir.list() {
        let uri = child
            .cap
            .read_uri()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let size = match &child.cap {
            lafs_core::dirnode::ChildCap::Known(Cap::ChkRead { size, .. }) => size.to_string(),
            lafs_core::dirnode::ChildCap::Known(Cap::Lit { data }) => data.len().to_string(),
            _ => "-".into(),
        };
        let _ = writeln!(
            html,
            "<tr><td><a class=\"child\" href=\"/uri/{}\">{}</a></td><td>{}</td><td>{size}</td></tr>",
            escape_segment(&uri),
            escape_html(name),
            escape_html(&lafs_core::dirnode::ops::kind_of(&child.cap)),
        );
    }
    html.push_str("</table>\n");
    if !cap.is_readonly() {
        // Back to this listing when done.
        let here = format!("/uri/{}", escape_segment(&cap.to_string()));
        let _ = writeln!(
            html,
            "<h2>Upload a file here</h2>\n<form id=\"upload-into\" action=\"{here}?t=upload\" \
             method=\"POST\" enctype=\"multipart/form-data\">\
             <input type=\"hidden\" name=\"t\" value=\"upload\">\
             <input type=\"hidden\" name=\"when_done\" value=\"{here}\">\
             <input type=\"file\" name=\"file\" id=\"file\"> \
             <input type=\"text\" name=\"name\" id=\"name\" placeholder=\"name (default: the file's)\"> \
             <input type=\"submit\" value=\"Upload\" id=\"upload-button\"></form>",
            here = escape_html(&here)
        );
    }
    html.push_str("<p><a href=\"/\">Back to the gateway</a></p></body></html>\n");
    html
}

/// Form fields a form upload reads besides `file` (a query argument of the same name wins, as
/// Tahoe's `get_arg` finds the URL's arguments first).
const FORM_ARGS: &[&str] = &["t", "name", "format", "mutable", "when_done", "replace"];

/// A form upload's body, read: its arguments (the URL's, then the form's) and the file, spooled.
struct Form {
    args: Target,
    filename: Option<String>,
    file: Spooled,
}

impl Form {
    /// Stream the multipart body: small fields into memory, the `file` field through the spool
    /// (a temporary file past 1 MiB). The rest of the body is read too, for fields after the
    /// file.
    fn read(
        request: &mut Request,
        target: &Target,
        config: &GatewayConfig,
    ) -> Result<Form, WebError> {
        let content_type = web::request_header(request, "Content-Type")
            .unwrap_or("")
            .to_string();
        let boundary = multipart::boundary(&content_type)?;
        let mut args = target.clone();
        let mut file = None;
        let mut parts = Multipart::new(request.as_reader(), &boundary);
        while let Some(part) = parts.next_part()? {
            if part.name == "file" && file.is_none() {
                if part.filename.as_deref() == Some("") {
                    return Err(WebError::bad_request(
                        "no file was chosen: pick a file in the form's file field",
                    ));
                }
                // A mutable file is held in memory to publish: refuse a large one while it
                // arrives, when the format is known by now.
                let limits;
                let config = match mutable_format(&args) {
                    Ok(Some(_)) => {
                        limits = GatewayConfig {
                            max_immutable_upload: config.max_mutable_upload,
                            ..config.clone()
                        };
                        &limits
                    }
                    _ => config,
                };
                let spooled = spool_reader(&mut parts.body(), config)?;
                file = Some((part.filename, spooled));
            } else if FORM_ARGS.contains(&part.name.as_str()) {
                let value = parts.read_field(config.max_small_body)?;
                let value = String::from_utf8_lossy(&value).trim().to_string();
                args.query.entry(part.name).or_insert(value);
            }
            // Any other part is skipped by `next_part`.
        }
        match args.t() {
            "" | "upload" => {}
            other => {
                return Err(WebError::bad_request(format!(
                    "a multipart form body is only accepted for t=upload, not t={other:?}"
                )))
            }
        }
        let Some((filename, file)) = file else {
            return Err(WebError::bad_request(
                "the form has no field named \"file\" (<input type=\"file\" name=\"file\">)",
            ));
        };
        Ok(Form {
            args,
            filename,
            file,
        })
    }
}

/// `POST /uri?t=upload`: a browser form upload (field `file`; `format=SDMF|MDMF` makes a
/// mutable file; `when_done=URL` redirects there, `%(uri)s` in it replaced by the cap).
pub(super) fn form_upload(
    worker: &mut Worker<'_>,
    request: &mut Request,
    target: &Target,
    account: &mut Account,
) -> Result<Answer, WebError> {
    let config = worker.config();
    let Form { args, file, .. } = Form::read(request, target, config)?;
    account.outcome.bytes_in = file.len;
    let cap = match mutable_format(&args)? {
        Some(format) => {
            account.kind = OpKind::MutableCreate;
            let contents = file.into_small(config.max_mutable_upload)?;
            worker.create_mutable(format, contents, account)?
        }
        None => {
            account.kind = OpKind::Upload;
            worker.upload_spooled(file, account)?
        }
    };
    Ok(uploaded(&cap, &args, 200, None).into())
}

/// `POST /uri/DIRCAP[/PATH]?t=upload`: a browser form upload into a directory, named by the
/// form's `name` field or else the file's name. A writeable mutable file of that name is
/// overwritten in place (unless `replace=false`), as Tahoe does.
pub(super) fn form_upload_into(
    worker: &mut Worker<'_>,
    request: &mut Request,
    target: &Target,
    root: &Cap,
    path: &[String],
    account: &mut Account,
) -> Result<Answer, WebError> {
    let config = worker.config();
    let form = Form::read(request, target, config)?;
    account.outcome.bytes_in = form.file.len;
    let name = form
        .args
        .arg("name")
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .or_else(|| form.filename.as_deref().map(str::trim))
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            WebError::bad_request(
                "an upload into a directory needs a name: a name field or a filename",
            )
        })?;
    if name.contains('/') {
        return Err(WebError::bad_request("name= may not contain a slash"));
    }
    let mut child = path.to_vec();
    child.push(name);
    let overwrite = replace_arg(&form.args)?;
    let format = mutable_format(&form.args)?;
    let Form { args, file, .. } = form;
    let body = Body::Spooled(file);
    let (cap, status) = worker.write_at(root, &child, (overwrite, format), body, account)?;
    Ok(uploaded(&cap, &args, status, Some(&child)).into())
}

/// Characters escaped in a cap put into a `when_done` URL (Python's `urllib.parse.quote`).
const QUOTE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// What may not go into a `Location` header as it is.
const LOCATION: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b' ');

/// The answer to a finished form upload: a redirect to `when_done`, or a page with the cap.
fn uploaded(cap: &Cap, args: &Target, status: u16, path: Option<&[String]>) -> Reply {
    let uri = cap.to_string();
    if let Some(when_done) = args.arg("when_done").filter(|w| !w.is_empty()) {
        let quoted = percent_encoding::utf8_percent_encode(&uri, QUOTE).to_string();
        let target = when_done.replace("%(uri)s", &quoted);
        let location = percent_encoding::utf8_percent_encode(&target, LOCATION).to_string();
        return Reply::text(303, format!("uploaded; see {location}\n"))
            .with_header("Location", location);
    }
    let mut html = page_start("File uploaded");
    if let Some(path) = path {
        let _ = writeln!(
            html,
            "<p>Linked as <code id=\"path\">{}</code>.</p>",
            escape_html(&lafs_core::dirnode::ops::show_path(path))
        );
    }
    let link = escape_segment(&uri);
    let _ = writeln!(
        html,
        "<p>The file's cap (keep it: it is the only way to read the file):</p>\n\
         <p><code id=\"cap\">{cap}</code></p>\n\
         <p><a id=\"download\" href=\"/uri/{link}\">Download the file</a> \
         (<a href=\"/uri/{link}?t=json\">JSON</a>) &middot; <a href=\"/\">Back to the gateway</a></p>\n\
         </body></html>",
        cap = escape_html(&uri),
    );
    let mut reply = Reply::html(html);
    reply.status = status;
    reply
}
