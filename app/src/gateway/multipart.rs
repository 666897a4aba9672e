//! A streaming multipart/form-data parser (RFC 7578, RFC 2046 section 5.1) for browser form
//! uploads.
//!
//! [`Multipart`] reads a body from any [`Read`] through one fixed buffer: part headers must fit
//! in it, part bodies are handed out as they arrive (a [`PartReader`] per part), so a file part
//! of any size passes through in buffer-sized pieces. Whatever the body holds, the parser
//! returns errors, never panics: a missing boundary, a body that ends before its closing
//! delimiter, headers that do not fit.

use std::io::{self, Read};

use tiny_http::Request;

use super::web::{self, WebError};

/// Size of the parser's buffer: part headers must fit in it.
pub const BUFFER_SIZE: usize = 64 << 10;

/// RFC 2046 allows boundaries of 1 to 70 characters; we accept a little more.
const MAX_BOUNDARY: usize = 200;

/// What is wrong with a multipart body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    #[error(
        "the request is not multipart/form-data with a boundary (Content-Type: {0:?}); \
         send the form with enctype=\"multipart/form-data\""
    )]
    NoBoundary(String),
    #[error("the multipart body ends before its closing boundary (was the upload cut short?)")]
    Truncated,
    #[error("the multipart body has no boundary line: is the Content-Type's boundary right?")]
    NoFirstBoundary,
    #[error("a part's headers are longer than {0} bytes")]
    HeadersTooLong(usize),
    #[error("a form field is longer than {0} bytes")]
    FieldTooLong(u64),
    #[error("malformed multipart body: {0}")]
    Malformed(String),
    #[error("could not read the request body: {0}")]
    Read(String),
}

impl From<MultipartError> for WebError {
    fn from(e: MultipartError) -> WebError {
        WebError::bad_request(e.to_string())
    }
}

impl From<MultipartError> for io::Error {
    fn from(e: MultipartError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// Whether the request's body is `multipart/form-data`.
pub fn is_form_data(request: &Request) -> bool {
    web::request_header(request, "Content-Type").is_some_and(|ct| {
        ct.trim_start()
            .get(..19)
            .is_some_and(|t| t.eq_ignore_ascii_case("multipart/form-data"))
    })
}

/// The `boundary` parameter of a `multipart/form-data` Content-Type.
pub fn boundary(content_type: &str) -> Result<Vec<u8>, MultipartError> {
    let no_boundary = || MultipartError::NoBoundary(content_type.to_string());
    let (kind, params) = parse_header_value(content_type);
    if !kind.eq_ignore_ascii_case("multipart/form-data") {
        return Err(no_boundary());
    }
    let boundary = params
        .into_iter()
        .find(|(k, _)| k == "boundary")
        .map(|(_, v)| v)
        .ok_or_else(no_boundary)?;
    if boundary.is_empty()
        || boundary.len() > MAX_BOUNDARY
        || boundary.bytes().any(|b| b == b'\r' || b == b'\n')
    {
        return Err(no_boundary());
    }
    Ok(boundary.into_bytes())
}

/// The headers of one part that matter for a form.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartHeaders {
    /// The form field's name (`Content-Disposition: form-data; name="..."`).
    pub name: String,
    /// The file's name, for file fields (`filename="..."`; empty when no file was chosen),
    /// without any directory a browser may have sent along.
    pub filename: Option<String>,
    pub content_type: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first delimiter.
    Preamble,
    /// Just after a delimiter (`\r\n--boundary`): next is `--` (the end) or a part's headers.
    Delimiter,
    /// In a part's body.
    Body,
    /// After the closing delimiter.
    Done,
}

/// A multipart body being read, part by part.
pub struct Multipart<R> {
    reader: R,
    /// `\r\n--boundary`: every delimiter, the first one too (the buffer starts with a CRLF).
    delimiter: Vec<u8>,
    buf: Box<[u8]>,
    /// Unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    eof: bool,
    state: State,
    /// In a body: `buf[start..body_end]` is known to be body data, and `at_delimiter` says
    /// whether the delimiter starts at `body_end`. Valid until the next fill.
    scanned: Option<(usize, bool)>,
}

impl<R> std::fmt::Debug for Multipart<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Multipart")
            .field("state", &self.state)
            .field("buffered", &(self.end - self.start))
            .finish()
    }
}

impl<R: Read> Multipart<R> {
    /// A parser for the body in `reader`, whose parts are separated by `boundary`.
    pub fn new(reader: R, boundary: &[u8]) -> Multipart<R> {
        Multipart::with_buffer_size(reader, boundary, BUFFER_SIZE)
    }

    /// As [`Multipart::new`] with a buffer of `size` bytes (at least 512 and a few boundaries).
    pub fn with_buffer_size(reader: R, boundary: &[u8], size: usize) -> Multipart<R> {
        let mut delimiter = b"\r\n--".to_vec();
        delimiter.extend_from_slice(boundary);
        let size = size.max(4 * delimiter.len() + 512);
        let mut buf = vec![0u8; size].into_boxed_slice();
        // A body may start with the first delimiter's `--boundary` right away: a CRLF in front
        // makes every delimiter look alike.
        buf[..2].copy_from_slice(b"\r\n");
        Multipart {
            reader,
            delimiter,
            buf,
            start: 0,
            end: 2,
            eof: false,
            state: State::Preamble,
            scanned: None,
        }
    }

    /// Move to the next part (skipping what is left of the current one) and read its headers;
    /// `None` after the closing delimiter.
    pub fn next_part(&mut self) -> Result<Option<PartHeaders>, MultipartError> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Body => self.skip_body()?,
                State::Preamble => self.skip_preamble()?,
                State::Delimiter => return self.after_delimiter(),
            }
        }
    }

    /// The current part's body, as a reader (empty when not in a part).
    pub fn body(&mut self) -> PartReader<'_, R> {
        PartReader { parts: self }
    }

    /// The current part's body whole, refusing more than `limit` bytes.
    pub fn read_field(&mut self, limit: u64) -> Result<Vec<u8>, MultipartError> {
        let mut value = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = self.read_body(&mut chunk).map_err(unwrap_io)?;
            if n == 0 {
                return Ok(value);
            }
            if (value.len() + n) as u64 > limit {
                return Err(MultipartError::FieldTooLong(limit));
            }
            value.extend_from_slice(&chunk[..n]);
        }
    }

    /// Read more into the buffer, moving unread bytes to its front first; the bytes read
    /// (0 at the end of the body or when the buffer is full).
    fn fill(&mut self) -> Result<usize, MultipartError> {
        self.scanned = None;
        if self.eof {
            return Ok(0);
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            return Ok(0);
        }
        loop {
            match self.reader.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(0);
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(MultipartError::Read(e.to_string())),
            }
        }
    }

    /// Make at least `n` bytes available; false if the body ends first.
    fn want(&mut self, n: usize) -> Result<bool, MultipartError> {
        while self.end - self.start < n {
            if self.fill()? == 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn skip_preamble(&mut self) -> Result<(), MultipartError> {
        loop {
            if let Some(i) = find(&self.buf[self.start..self.end], &self.delimiter) {
                self.start += i + self.delimiter.len();
                self.state = State::Delimiter;
                return Ok(());
            }
            // Keep only what could be the start of a delimiter.
            let keep = (self.delimiter.len() - 1).min(self.end - self.start);
            self.start = self.end - keep;
            if self.fill()? == 0 {
                return Err(MultipartError::NoFirstBoundary);
            }
        }
    }

    fn skip_body(&mut self) -> Result<(), MultipartError> {
        let mut sink = [0u8; 4096];
        while self.read_body(&mut sink).map_err(unwrap_io)? > 0 {}
        Ok(())
    }

    /// After `\r\n--boundary`: `--` ends the body; otherwise optional spaces, CRLF, the part's
    /// headers and an empty line.
    fn after_delimiter(&mut self) -> Result<Option<PartHeaders>, MultipartError> {
        if !self.want(2)? {
            return Err(MultipartError::Truncated);
        }
        if &self.buf[self.start..self.start + 2] == b"--" {
            // The epilogue, if any, is ignored (and not even read).
            self.start += 2;
            self.state = State::Done;
            return Ok(None);
        }
        // Transport padding, then the CRLF ending the delimiter line.
        loop {
            if !self.want(1)? {
                return Err(MultipartError::Truncated);
            }
            match self.buf[self.start] {
                b' ' | b'\t' => self.start += 1,
                _ => break,
            }
        }
        if !self.want(2)? {
            return Err(MultipartError::Truncated);
        }
        if &self.buf[self.start..self.start + 2] != b"\r\n" {
            return Err(MultipartError::Malformed(
                "a boundary line is followed by something other than a line end".into(),
            ));
        }
        // From that CRLF, the headers end at the first empty line: CRLF CRLF (at once when
        // there are no headers).
        let mut searched = 0;
        let block = loop {
            let unread = &self.buf[self.start..self.end];
            if let Some(i) = find(&unread[searched..], b"\r\n\r\n") {
                break searched + i;
            }
            // `searched` counts from `start`, which a fill may move but not past unread bytes.
            searched = unread.len().saturating_sub(3);
            if self.fill()? == 0 {
                if self.eof {
                    return Err(MultipartError::Truncated);
                }
                return Err(MultipartError::HeadersTooLong(self.buf.len()));
            }
        };
        let headers = parse_part_headers(&self.buf[self.start + 2..self.start + block + 2])?;
        self.start += block + 4;
        self.state = State::Body;
        self.scanned = None;
        Ok(Some(headers))
    }

    /// Read from the current part's body; 0 at its end.
    fn read_body(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.state != State::Body || out.is_empty() {
            return Ok(0);
        }
        loop {
            let (body_end, at_delimiter) = match self.scanned {
                Some(s) => s,
                None => {
                    let unread = &self.buf[self.start..self.end];
                    let s = match find(unread, &self.delimiter) {
                        Some(i) => (self.start + i, true),
                        // Hold back what could be the start of a delimiter.
                        None => (
                            self.start + unread.len().saturating_sub(self.delimiter.len() - 1),
                            false,
                        ),
                    };
                    self.scanned = Some(s);
                    s
                }
            };
            if body_end > self.start {
                let n = out.len().min(body_end - self.start);
                out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
                self.start += n;
                return Ok(n);
            }
            if at_delimiter {
                self.start += self.delimiter.len();
                self.state = State::Delimiter;
                self.scanned = None;
                return Ok(0);
            }
            if self.fill()? == 0 {
                // The buffer cannot be full here (at most a delimiter's length is held back),
                // so the body ended.
                return Err(MultipartError::Truncated.into());
            }
        }
    }
}

/// A multipart error carried through `io::Error` back out.
fn unwrap_io(e: io::Error) -> MultipartError {
    if e.get_ref()
        .is_some_and(|inner| inner.is::<MultipartError>())
    {
        if let Some(inner) = e.into_inner() {
            if let Ok(m) = inner.downcast::<MultipartError>() {
                return *m;
            }
        }
        return MultipartError::Truncated;
    }
    MultipartError::Read(e.to_string())
}

/// One part's body.
#[derive(Debug)]
pub struct PartReader<'m, R> {
    parts: &'m mut Multipart<R>,
}

impl<R: Read> Read for PartReader<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.parts.read_body(out)
    }
}

/// The first occurrence of `needle` (not empty) in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (first, rest) = needle.split_first()?;
    let mut at = 0;
    while at + needle.len() <= hay.len() {
        let i = hay[at..=hay.len() - needle.len()]
            .iter()
            .position(|b| b == first)?;
        let candidate = at + i;
        if &hay[candidate + 1..candidate + needle.len()] == rest {
            return Some(candidate);
        }
        at = candidate + 1;
    }
    None
}

/// A part's header block (lines separated by CRLF, no final empty line).
fn parse_part_headers(block: &[u8]) -> Result<PartHeaders, MultipartError> {
    let text = String::from_utf8_lossy(block);
    // Unfold obsolete continuation lines.
    let mut lines: Vec<String> = Vec::new();
    for line in text.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = lines.last_mut() {
                last.push(' ');
                last.push_str(line.trim());
                continue;
            }
        }
        lines.push(line.to_string());
    }
    let mut disposition = None;
    let mut content_type = None;
    for line in &lines {
        if line.is_empty() {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(MultipartError::Malformed(format!(
                "a part header without a colon: {line:?}"
            )));
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-disposition") {
            disposition = Some(value.trim().to_string());
        } else if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(value.trim().to_string());
        }
    }
    let disposition = disposition.ok_or_else(|| {
        MultipartError::Malformed("a part has no Content-Disposition header".into())
    })?;
    let (kind, params) = parse_header_value(&disposition);
    if !kind.eq_ignore_ascii_case("form-data") {
        return Err(MultipartError::Malformed(format!(
            "a part's Content-Disposition is {kind:?}, not form-data"
        )));
    }
    let mut name = None;
    let mut filename = None;
    let mut filename_ext = None;
    for (k, v) in params {
        match k.as_str() {
            "name" if name.is_none() => name = Some(unescape_form(&v)),
            "filename" if filename.is_none() => filename = Some(unescape_form(&v)),
            "filename*" if filename_ext.is_none() => filename_ext = decode_ext_value(&v),
            _ => {}
        }
    }
    let name = name.ok_or_else(|| {
        MultipartError::Malformed("a part's Content-Disposition has no name".into())
    })?;
    Ok(PartHeaders {
        name,
        filename: filename_ext.or(filename).map(|f| base_name(&f)),
        content_type,
    })
}

/// `type; key=value; key="quoted value"`: the type and the parameters (keys in lower case).
/// Quoted values take `\"` and `\\` as escapes; any other backslash is kept (Windows paths).
fn parse_header_value(value: &str) -> (String, Vec<(String, String)>) {
    let mut chars = value.chars().peekable();
    let mut kind = String::new();
    while let Some(&c) = chars.peek() {
        if c == ';' {
            break;
        }
        kind.push(c);
        chars.next();
    }
    let mut params = Vec::new();
    loop {
        // Skip the `;` and spaces before a key.
        while chars.peek().is_some_and(|c| *c == ';' || c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ';' {
                break;
            }
            key.push(c);
            chars.next();
        }
        let key = key.trim().to_ascii_lowercase();
        if chars.peek() != Some(&'=') {
            // A key without a value.
            params.push((key, String::new()));
            continue;
        }
        chars.next();
        while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
            chars.next();
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' if matches!(chars.peek(), Some('"') | Some('\\')) => {
                        val.extend(chars.next());
                    }
                    c => val.push(c),
                }
            }
            // Anything between the closing quote and the next `;` is ignored.
            while chars.peek().is_some_and(|c| *c != ';') {
                chars.next();
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ';' {
                    break;
                }
                val.push(c);
                chars.next();
            }
            val = val.trim().to_string();
        }
        params.push((key, val));
    }
    (kind.trim().to_string(), params)
}

/// Browsers write `"`, CR and LF in names and filenames as `%22`, `%0D` and `%0A` (HTML's
/// form-data encoding).
fn unescape_form(v: &str) -> String {
    v.replace("%22", "\"")
        .replace("%0D", "\r")
        .replace("%0A", "\n")
        .replace("%0d", "\r")
        .replace("%0a", "\n")
}

/// RFC 5987 `UTF-8''percent-encoded` (other charsets are not decoded).
fn decode_ext_value(v: &str) -> Option<String> {
    let (charset, rest) = v.split_once('\'')?;
    let (_language, encoded) = rest.split_once('\'')?;
    if !charset.eq_ignore_ascii_case("utf-8") {
        return None;
    }
    percent_encoding::percent_decode_str(encoded)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// The last component of a path some browsers send as the filename (`C:\dir\a.txt`, `a/b.txt`).
fn base_name(name: &str) -> String {
    let name = name.rsplit('/').next().unwrap_or(name);
    let bytes = name.as_bytes();
    let windows_path =
        (bytes.len() > 2 && bytes[1] == b':' && bytes[2] == b'\\') || name.starts_with("\\\\");
    if windows_path {
        name.rsplit('\\').next().unwrap_or(name).to_string()
    } else {
        name.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out its data in pieces of the given sizes, in turn.
    struct Trickle {
        data: Vec<u8>,
        at: usize,
        sizes: Vec<usize>,
        turn: usize,
    }

    impl Trickle {
        fn new(data: &[u8], sizes: &[usize]) -> Trickle {
            Trickle {
                data: data.to_vec(),
                at: 0,
                sizes: sizes.to_vec(),
                turn: 0,
            }
        }
    }

    impl Read for Trickle {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let size = self.sizes[self.turn % self.sizes.len()].max(1);
            self.turn += 1;
            let n = size.min(out.len()).min(self.data.len() - self.at);
            out[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    type Parts = Vec<(PartHeaders, Vec<u8>)>;

    /// Every part with its whole body.
    fn parse_with(
        body: &[u8],
        boundary: &[u8],
        sizes: &[usize],
        buffer: usize,
    ) -> Result<Parts, MultipartError> {
        let mut form = Multipart::with_buffer_size(Trickle::new(body, sizes), boundary, buffer);
        let mut parts = Vec::new();
        while let Some(h) = form.next_part()? {
            let mut data = Vec::new();
            // Odd-sized reads on our side too.
            let mut chunk = [0u8; 7];
            loop {
                let n = form.body().read(&mut chunk).map_err(unwrap_io)?;
                if n == 0 {
                    break;
                }
                data.extend_from_slice(&chunk[..n]);
            }
            parts.push((h, data));
        }
        Ok(parts)
    }

    fn parse(body: &[u8]) -> Result<Parts, MultipartError> {
        parse_with(body, b"XyZ", &[usize::MAX], BUFFER_SIZE)
    }

    /// A body as a browser builds it.
    fn form(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (name, filename, data) in parts {
            body.extend_from_slice(b"--XyZ\r\n");
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
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"--XyZ--\r\n");
        body
    }

    fn field(parts: &Parts, i: usize) -> (&str, Option<&str>, &[u8]) {
        let (h, d) = &parts[i];
        (h.name.as_str(), h.filename.as_deref(), d.as_slice())
    }

    #[test]
    fn boundaries_come_from_the_content_type() {
        assert_eq!(
            boundary("multipart/form-data; boundary=----WebKitFormBoundaryAbC").unwrap(),
            b"----WebKitFormBoundaryAbC"
        );
        assert_eq!(
            boundary("Multipart/Form-Data;charset=utf-8; BOUNDARY=\"a b;c\"").unwrap(),
            b"a b;c"
        );
        for bad in [
            "",
            "multipart/form-data",
            "multipart/form-data; boundary=",
            "multipart/form-data; boundary=\"\"",
            "multipart/mixed; boundary=abc",
            "application/x-www-form-urlencoded",
        ] {
            assert!(
                matches!(boundary(bad), Err(MultipartError::NoBoundary(_))),
                "{bad:?}"
            );
        }
        assert!(boundary(&format!(
            "multipart/form-data; boundary={}",
            "a".repeat(201)
        ))
        .is_err());
    }

    #[test]
    fn fields_before_and_after_the_file() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let body = form(&[
            ("t", None, b"upload"),
            ("file", Some("report.pdf"), &data),
            ("name", None, b"other name"),
            ("when_done", None, b"/uri/%(uri)s"),
        ]);
        let parts = parse(&body).unwrap();
        assert_eq!(parts.len(), 4);
        assert_eq!(field(&parts, 0), ("t", None, &b"upload"[..]));
        assert_eq!(field(&parts, 1), ("file", Some("report.pdf"), &data[..]));
        assert_eq!(
            parts[1].0.content_type.as_deref(),
            Some("application/octet-stream")
        );
        assert_eq!(field(&parts, 2), ("name", None, &b"other name"[..]));
        assert_eq!(field(&parts, 3), ("when_done", None, &b"/uri/%(uri)s"[..]));
    }

    #[test]
    fn every_split_of_the_body_gives_the_same_parts() {
        // CRLFs, dashes and near-boundaries inside the data must stay data.
        let tricky: &[u8] = b"\r\n\r\n--Xy\r\n-XyZ-\r--XyZa\r\n-\r\n--X\r\n";
        let mut data = tricky.to_vec();
        data.extend((0..300u32).map(|i| i as u8));
        data.extend_from_slice(b"\r\n--Xy");
        let body = form(&[
            ("a", None, b""),
            ("file", Some("x.bin"), &data),
            ("b", None, b"\r\n"),
        ]);
        let expected = parse(&body).unwrap();
        assert_eq!(field(&expected, 0), ("a", None, &b""[..]));
        assert_eq!(field(&expected, 1), ("file", Some("x.bin"), &data[..]));
        assert_eq!(field(&expected, 2), ("b", None, &b"\r\n"[..]));
        for sizes in [vec![1], vec![2], vec![3], vec![5, 1, 9], vec![13], vec![64]] {
            // The smallest buffer the parser allows, so the boundary straddles refills.
            for buffer in [0, 100, 1000] {
                assert_eq!(
                    parse_with(&body, b"XyZ", &sizes, buffer).unwrap(),
                    expected,
                    "reads of {sizes:?}, buffer {buffer}"
                );
            }
        }
        // Every single cut point: the first read ends at `cut`.
        for cut in 1..body.len() {
            assert_eq!(
                parse_with(&body, b"XyZ", &[cut, usize::MAX], 0).unwrap(),
                expected,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn large_parts_stream_through_a_small_buffer() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let body = form(&[("file", Some("big"), &data)]);
        let parts = parse_with(&body, b"XyZ", &[4096, 17, 65536], 1024).unwrap();
        assert_eq!(field(&parts, 0), ("file", Some("big"), &data[..]));
    }

    #[test]
    fn filenames_quoted_escaped_and_with_paths() {
        let body = b"preamble to ignore\r\n--XyZ\r\n\
            content-disposition: form-data; name=\"file\"; filename=\"my \\\"best\\\"; file.txt\"\r\n\r\n\
            one\r\n--XyZ   \r\n\
            Content-Disposition: form-data; name=\"q%22\"; filename=\"C:\\\\Users\\\\me\\\\a b.txt\"\r\n\r\n\
            two\r\n--XyZ\r\n\
            Content-Disposition: form-data; name=\"c\"; filename=\"a%22b%22.txt\"\r\n\r\n\
            three\r\n--XyZ\r\n\
            Content-Disposition: form-data; name=\"d\"; filename=\"fallback\"; filename*=UTF-8''%E2%82%AC%20rates.txt\r\n\r\n\
            four\r\n--XyZ\r\n\
            Content-Disposition: form-data; name=e; filename=plain.txt\r\n\r\n\
            five\r\n--XyZ\r\n\
            Content-Disposition: form-data; name=\"f\"; filename=\"dir/sub/x.txt\"\r\n\r\n\
            six\r\n--XyZ\r\n\
            Content-Disposition: form-data; name=\"g\"; filename=\"C:\\path\\win.txt\"\r\n\r\n\
            seven\r\n--XyZ--";
        let parts = parse(body).unwrap();
        assert_eq!(
            field(&parts, 0),
            ("file", Some("my \"best\"; file.txt"), &b"one"[..])
        );
        assert_eq!(field(&parts, 1), ("q\"", Some("a b.txt"), &b"two"[..]));
        assert_eq!(field(&parts, 2), ("c", Some("a\"b\".txt"), &b"three"[..]));
        assert_eq!(field(&parts, 3), ("d", Some("€ rates.txt"), &b"four"[..]));
        assert_eq!(field(&parts, 4), ("e", Some("plain.txt"), &b"five"[..]));
        assert_eq!(field(&parts, 5), ("f", Some("x.txt"), &b"six"[..]));
        assert_eq!(field(&parts, 6), ("g", Some("win.txt"), &b"seven"[..]));
    }

    #[test]
    fn empty_bodies_parts_and_headerless_parts() {
        // Only the closing delimiter: no parts.
        assert_eq!(parse(b"--XyZ--\r\n").unwrap(), vec![]);
        // An empty file (no file chosen in a browser).
        let parts = parse(&form(&[("file", Some(""), b"")])).unwrap();
        assert_eq!(field(&parts, 0), ("file", Some(""), &b""[..]));
        // A part without headers is not a form field.
        assert!(matches!(
            parse(b"--XyZ\r\n\r\ndata\r\n--XyZ--"),
            Err(MultipartError::Malformed(_))
        ));
        // A part whose disposition has no name.
        assert!(matches!(
            parse(b"--XyZ\r\nContent-Disposition: form-data\r\n\r\ndata\r\n--XyZ--"),
            Err(MultipartError::Malformed(_))
        ));
    }

    #[test]
    fn truncated_bodies_are_errors() {
        let body = form(&[("t", None, b"upload"), ("file", Some("f"), b"contents")]);
        // Every proper prefix that stops before the closing `--` is an error, never a panic
        // and never a silently shortened file.
        let closing = body.len() - b"--\r\n".len();
        for len in 0..closing {
            let result = parse_with(&body[..len], b"XyZ", &[3], 0);
            assert!(result.is_err(), "prefix of {len} bytes parsed: {result:?}");
        }
        assert_eq!(parse(&body[..closing + 2]).unwrap().len(), 2);
        // A missing closing delimiter.
        let mut open = form(&[("file", Some("f"), b"contents")]);
        open.truncate(open.len() - b"--XyZ--\r\n".len());
        assert_eq!(parse(&open), Err(MultipartError::Truncated));
        // The wrong boundary.
        assert_eq!(
            parse_with(&body, b"other", &[100], 0),
            Err(MultipartError::NoFirstBoundary)
        );
        assert_eq!(parse(b""), Err(MultipartError::NoFirstBoundary));
    }

    #[test]
    fn garbage_never_panics() {
        // A cheap deterministic fuzz: random bytes with boundary pieces mixed in.
        let pieces: [&[u8]; 8] = [
            b"--XyZ",
            b"\r\n",
            b"--",
            b"Content-Disposition: form-data; name=\"file\"; filename=\"",
            b"\"",
            b";",
            b"\r\n\r\n",
            b"x",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..2000 {
            let mut body = Vec::new();
            for _ in 0..(next() % 20) {
                let r = next();
                if r % 3 == 0 {
                    body.push((r >> 8) as u8);
                } else {
                    body.extend_from_slice(pieces[(r >> 8) as usize % pieces.len()]);
                }
            }
            let sizes = [1 + (next() % 5) as usize, 1 + (next() % 50) as usize];
            let _ = parse_with(&body, b"XyZ", &sizes, 0);
        }
    }

    #[test]
    fn headers_that_do_not_fit_are_refused() {
        let mut body = b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\nX-Long: ".to_vec();
        body.extend(std::iter::repeat_n(b'a', 5000));
        body.extend_from_slice(b"\r\n\r\nv\r\n--XyZ--");
        assert!(matches!(
            parse_with(&body, b"XyZ", &[100], 1024),
            Err(MultipartError::HeadersTooLong(_))
        ));
        assert_eq!(parse_with(&body, b"XyZ", &[100], 8192).unwrap().len(), 1);
    }

    #[test]
    fn fields_are_bounded_and_the_rest_of_a_part_is_skipped() {
        let body = form(&[("big", None, &[b'x'; 100]), ("file", Some("f"), b"data")]);
        let mut form_parts = Multipart::new(&body[..], b"XyZ");
        assert_eq!(form_parts.next_part().unwrap().unwrap().name, "big");
        assert_eq!(
            form_parts.read_field(10),
            Err(MultipartError::FieldTooLong(10))
        );
        // The unread rest of `big` is skipped.
        let file = form_parts.next_part().unwrap().unwrap();
        assert_eq!(file.filename.as_deref(), Some("f"));
        assert_eq!(form_parts.read_field(10).unwrap(), b"data");
        assert_eq!(form_parts.next_part().unwrap(), None);
        assert_eq!(form_parts.next_part().unwrap(), None);
    }

    #[test]
    fn a_truncated_file_part_is_an_io_error_for_readers() {
        let body =
            b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\nabcdef";
        let mut parts = Multipart::new(&body[..], b"XyZ");
        parts.next_part().unwrap().unwrap();
        let mut out = Vec::new();
        let e = parts.body().read_to_end(&mut out).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("cut short"), "{e}");
    }
}
