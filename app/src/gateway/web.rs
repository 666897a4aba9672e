//! HTTP plumbing shared by the gateway's handlers: errors with Tahoe's status codes, query
//! arguments, path segments, byte ranges and the replies handlers build.

use std::collections::BTreeMap;
use std::io::Read;

use tiny_http::{Header, Request};

/// A request that cannot be served, with the HTTP status and a message for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebError {
    pub status: u16,
    pub message: String,
}

impl WebError {
    pub fn new(status: u16, message: impl Into<String>) -> WebError {
        WebError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> WebError {
        WebError::new(400, message)
    }

    pub fn not_found(message: impl Into<String>) -> WebError {
        WebError::new(404, message)
    }

    pub fn method_not_allowed(method: &str, what: &str) -> WebError {
        WebError::new(405, format!("{method} is not supported on {what}"))
    }
}

/// A finished answer, written by the gateway loop.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body: body.into().into_bytes(),
        }
    }

    pub fn json(value: &serde_json::Value) -> Reply {
        Reply {
            status: 200,
            content_type: "application/json",
            headers: Vec::new(),
            body: value.to_string().into_bytes(),
        }
    }

    pub fn html(body: String) -> Reply {
        Reply {
            status: 200,
            content_type: "text/html; charset=utf-8",
            headers: Vec::new(),
            body: body.into_bytes(),
        }
    }

    pub fn bytes(status: u16, content_type: &'static str, body: Vec<u8>) -> Reply {
        Reply {
            status,
            content_type,
            headers: Vec::new(),
            body,
        }
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Reply {
        self.headers.push((name, value));
        self
    }

    pub fn error(e: &WebError) -> Reply {
        let mut message = e.message.clone();
        message.push('\n');
        Reply::text(e.status, message)
    }
}

/// `name: value` as a tiny_http header (values we build are always valid ASCII).
pub fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes())
        .unwrap_or_else(|()| Header::from_bytes(&b"X-Invalid"[..], &b"1"[..]).expect("ascii"))
}

/// A request's target split into decoded path segments and query arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Path segments after the leading `/`, percent-decoded. An empty last segment (a trailing
    /// slash) is dropped.
    pub segments: Vec<String>,
    pub query: BTreeMap<String, String>,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, WebError> {
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let mut segments = Vec::new();
        let raw: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        for (i, segment) in raw.iter().enumerate() {
            if segment.is_empty() {
                if i + 1 == raw.len() {
                    continue;
                }
                // Tahoe refuses `//` inside a path rather than guessing.
                if i > 0 {
                    return Err(WebError::bad_request(
                        "The webapi does not allow empty pathname components, i.e. a double slash",
                    ));
                }
                continue;
            }
            let decoded = percent_encoding::percent_decode_str(segment)
                .decode_utf8()
                .map_err(|_| WebError::bad_request("path segments must be UTF-8"))?;
            segments.push(decoded.into_owned());
        }
        let query = form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Ok(Target { segments, query })
    }

    pub fn arg(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    /// The `t=` argument, empty if absent.
    pub fn t(&self) -> &str {
        self.arg("t").unwrap_or("")
    }

    /// A boolean argument spelled as Tahoe accepts (`true/t/1/false/f/0`, any case).
    pub fn flag(&self, name: &str, default: bool) -> Result<bool, WebError> {
        match self.arg(name) {
            None => Ok(default),
            Some(v) => parse_bool(v)
                .ok_or_else(|| WebError::bad_request(format!("invalid boolean argument: {v:?}"))),
        }
    }
}

pub fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "t" | "1" | "on" => Some(true),
        "false" | "f" | "0" | "off" => Some(false),
        _ => None,
    }
}

/// The value of the request's first header called `name`.
pub fn request_header<'r>(request: &'r Request, name: &str) -> Option<&'r str> {
    request
        .headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// A single `bytes=` range, resolved against the file size: `(offset, length)`.
/// `Ok(None)` means "the whole file" (no header, or a form we ignore as RFC 7233 allows:
/// several ranges, other units). A start at or past the end is `Err` (416).
pub fn parse_range(value: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, WebError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let unsatisfiable = || {
        WebError::new(
            416,
            format!("the range {value:?} is not satisfiable: the file has {size} bytes"),
        )
    };
    let (start, end) = if first.is_empty() {
        // A suffix: the last N bytes.
        let Ok(n) = last.parse::<u64>() else {
            return Ok(None);
        };
        if n == 0 || size == 0 {
            return Err(unsatisfiable());
        }
        (size.saturating_sub(n), size - 1)
    } else {
        let Ok(start) = first.parse::<u64>() else {
            return Ok(None);
        };
        let end = if last.is_empty() {
            size.saturating_sub(1)
        } else {
            let Ok(end) = last.parse::<u64>() else {
                return Ok(None);
            };
            if end < start {
                return Ok(None);
            }
            end.min(size.saturating_sub(1))
        };
        (start, end)
    };
    if start >= size {
        return Err(unsatisfiable());
    }
    Ok(Some((start, end - start + 1)))
}

/// Read a small request body (caps, JSON) whole, refusing more than `limit` bytes with 413.
pub fn read_small_body(request: &mut Request, limit: u64) -> Result<Vec<u8>, WebError> {
    if let Some(len) = request.body_length() {
        if len as u64 > limit {
            return Err(too_large(limit));
        }
    }
    let mut body = Vec::new();
    request
        .as_reader()
        .take(limit + 1)
        .read_to_end(&mut body)
        .map_err(|e| WebError::bad_request(format!("could not read the request body: {e}")))?;
    if body.len() as u64 > limit {
        return Err(too_large(limit));
    }
    Ok(body)
}

pub fn too_large(limit: u64) -> WebError {
    WebError::new(
        413,
        format!("the request body is larger than this gateway accepts here ({limit} bytes)"),
    )
}

/// Text for HTML pages.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A path segment for a URL (caps are URL-safe except for `:`, which is fine in paths).
pub fn escape_segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b':');

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_decode_segments_and_arguments() {
        let t = Target::parse("/uri/URI%3ADIR2%3Aab/a%20b/?t=json&replace=false").unwrap();
        assert_eq!(t.segments, ["uri", "URI:DIR2:ab", "a b"]);
        assert_eq!(t.t(), "json");
        assert_eq!(t.flag("replace", true), Ok(false));
        assert!(t.flag("x", true).unwrap());
        assert!(Target::parse("/uri/a//b").is_err());
        assert!(Target::parse("/uri/%ff").is_err());
        assert_eq!(Target::parse("/").unwrap().segments, Vec::<String>::new());
    }

    #[test]
    fn ranges_follow_rfc_7233_single_ranges() {
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-3"), 10), Ok(Some((0, 4))));
        assert_eq!(parse_range(Some("bytes=5-"), 10), Ok(Some((5, 5))));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Ok(Some((7, 3))));
        assert_eq!(parse_range(Some("bytes=8-100"), 10), Ok(Some((8, 2))));
        assert_eq!(parse_range(Some("bytes=-100"), 10), Ok(Some((0, 10))));
        assert_eq!(
            parse_range(Some("bytes=10-12"), 10).unwrap_err().status,
            416
        );
        assert_eq!(parse_range(Some("bytes=0-0"), 0).unwrap_err().status, 416);
        // Forms we do not serve fall back to the whole file.
        assert_eq!(parse_range(Some("bytes=0-1,4-5"), 10), Ok(None));
        assert_eq!(parse_range(Some("items=0-1"), 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=5-2"), 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=x-2"), 10), Ok(None));
    }
}
