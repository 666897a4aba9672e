//! Pages for people: the welcome page at `/` (grid status, an upload form, a cap box), HTML
//! directory listings and the statistics page, plus the browser form uploads they use.

use std::fmt::Write as _;

use lafs_core::cap::Cap;
use lafs_core::dirnode::Directory;
use tiny_http::Request;

use super::api::{Answer, GridInfo, Worker};
use super::stats::{OpKind, Stats};
use super::web::{escape_html, escape_segment, Reply, Target, WebError};

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
pub fn page(info: &GridInfo, stats: &Stats) -> Reply {
    let mut html = page_start("lafs gateway");
    let _ = writeln!(
        html,
        "<h2>Storage servers ({})</h2><table id=\"servers\"><tr><th>id</th><th>address</th></tr>",
        info.servers.len()
    );
    for s in &info.servers {
        let _ = writeln!(
            html,
            "<tr><td><code>{}</code></td><td>{}</td></tr>",
            lafs_core::base32::encode(&s.id.0),
            s.addr
        );
    }
    html.push_str("</table>\n");
    html.push_str(
        "<h2>Upload a file</h2>\n<form id=\"upload\" action=\"/uri\" method=\"POST\" \
         enctype=\"multipart/form-data\"><input type=\"hidden\" name=\"t\" value=\"upload\">\
         <input type=\"file\" name=\"file\" id=\"file\"> <input type=\"submit\" value=\"Upload\" \
         id=\"upload-button\"></form>\n",
    );
    html.push_str(
        "<h2>Open a cap</h2>\n<form id=\"open\" action=\"/uri\" method=\"GET\">\
         <input type=\"text\" name=\"uri\" id=\"cap\" placeholder=\"URI:...\"> \
         <input type=\"submit\" value=\"Open\"></form>\n",
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
            "<tr><td><a href=\"/uri/{}\">{}</a></td><td>{}</td><td>{size}</td></tr>",
            escape_segment(&uri),
            escape_html(name),
            escape_html(&crate::dirs::kind_of(&child.cap)),
        );
    }
    html.push_str("</table></body></html>\n");
    html
}

/// `POST /uri?t=upload`: a browser form upload.
pub(super) fn form_upload(
    _worker: &mut Worker<'_>,
    _request: &mut Request,
    _target: &Target,
) -> Result<Answer, WebError> {
    Err(WebError::new(
        501,
        "form uploads are not built yet; use PUT /uri",
    ))
}

/// `POST /uri/DIRCAP/PATH?t=upload`: a browser form upload into a directory.
pub(super) fn form_upload_into(
    _worker: &mut Worker<'_>,
    _request: &mut Request,
    _target: &Target,
    _root: &Cap,
    _path: &[String],
) -> Result<Answer, WebError> {
    Err(WebError::new(
        501,
        "form uploads are not built yet; use PUT /uri/DIRCAP/NAME",
    ))
}
