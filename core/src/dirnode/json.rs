//! JSON exactly as Python's `json` module reads and writes it (Tahoe stores child metadata with
//! `json.dumps(metadata)`).
//!
//! Byte-identical directories need three things general JSON libraries do not give: object keys
//! in insertion order (Python dicts keep it), Python's float `repr` (`1e+16`, `1e-05`,
//! `1246663897.4336269`), and `ensure_ascii` escaping (`\u00e9`, surrogate pairs) with `", "` and
//! `": "` separators. Reading accepts what `json.loads` accepts (including `NaN` and
//! `Infinity`, integers of any size, duplicate keys with the last value winning at the first
//! key's position), except lone UTF-16 surrogates, which a Rust `String` cannot hold.

use std::fmt::Write as _;

/// Nesting deeper than this is refused; Python's own limit (recursion) is about 1000.
pub const MAX_DEPTH: usize = 500;

/// A JSON value as Python's `json` module models it.
#[derive(Clone, Debug, PartialEq)]
pub enum JsonValue {
    Null,
    Bool(bool),
    /// An integer that fits in `i64`.
    Int(i64),
    /// An integer outside `i64`, as canonical decimal text (Python ints are unbounded).
    BigInt(String),
    /// A float; JSON numbers with a fraction or exponent, plus `NaN`/`Infinity`.
    Float(f64),
    String(String),
    Array(Vec<JsonValue>),
    Object(JsonObject),
}

/// A JSON object that keeps its keys in insertion order, like a Python dict.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JsonObject {
    entries: Vec<(String, JsonValue)>,
}

/// Why a byte string is not JSON `json.loads` would accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON at byte {offset}: {what}")]
pub struct JsonError {
    /// Byte offset into the input where the problem was found.
    pub offset: usize,
    /// What was expected or what is wrong.
    pub what: &'static str,
}

impl JsonObject {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&JsonValue> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut JsonValue> {
        self.entries
            .iter_mut()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key`; an existing key keeps its position (as in a Python dict), a new one is
    /// appended. Returns the previous value.
    pub fn insert(&mut self, key: impl Into<String>, value: JsonValue) -> Option<JsonValue> {
        let key = key.into();
        match self.get_mut(&key) {
            Some(slot) => Some(std::mem::replace(slot, value)),
            None => {
                self.entries.push((key, value));
                None
            }
        }
    }

    /// Removes `key`, keeping the order of the others.
    pub fn remove(&mut self, key: &str) -> Option<JsonValue> {
        let pos = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(pos).1)
    }

    /// Keys and values in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &JsonValue)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// `json.dumps(self)` as Python writes it.
    pub fn to_python_json(&self) -> String {
        let mut out = String::with_capacity(64);
        write_object(&mut out, self);
        out
    }

    /// `json.loads(bytes)`, requiring the top level to be an object.
    pub fn parse(bytes: &[u8]) -> Result<JsonObject, JsonError> {
        match JsonValue::parse(bytes)? {
            JsonValue::Object(o) => Ok(o),
            _ => Err(JsonError {
                offset: 0,
                what: "top-level value is not an object",
            }),
        }
    }
}

impl FromIterator<(String, JsonValue)> for JsonObject {
    fn from_iter<I: IntoIterator<Item = (String, JsonValue)>>(iter: I) -> Self {
        let mut o = JsonObject::new();
        for (k, v) in iter {
            o.insert(k, v);
        }
        o
    }
}

impl JsonValue {
    /// Python truthiness (`if value:`), which Tahoe applies to metadata flags like `no-write`.
    pub fn is_truthy(&self) -> bool {
        match self {
            JsonValue::Null => false,
            JsonValue::Bool(b) => *b,
            JsonValue::Int(i) => *i != 0,
            JsonValue::BigInt(_) => true, // never zero: zero fits in i64
            JsonValue::Float(f) => *f != 0.0,
            JsonValue::String(s) => !s.is_empty(),
            JsonValue::Array(a) => !a.is_empty(),
            JsonValue::Object(o) => !o.is_empty(),
        }
    }

    /// `json.dumps(self)` as Python writes it.
    pub fn to_python_json(&self) -> String {
        let mut out = String::new();
        write_value(&mut out, self);
        out
    }

    /// `json.loads(bytes)` for UTF-8 input.
    pub fn parse(bytes: &[u8]) -> Result<JsonValue, JsonError> {
        let text = std::str::from_utf8(bytes).map_err(|e| JsonError {
            offset: e.valid_up_to(),
            what: "not UTF-8",
        })?;
        let mut p = Parser {
            s: text.as_bytes(),
            text,
            pos: 0,
        };
        p.skip_ws();
        let v = p.value(0)?;
        p.skip_ws();
        if p.pos != p.s.len() {
            return Err(p.err("extra data after the JSON value"));
        }
        Ok(v)
    }
}

// ---- writing ----

fn write_value(out: &mut String, v: &JsonValue) {
    match v {
        JsonValue::Null => out.push_str("null"),
        JsonValue::Bool(true) => out.push_str("true"),
        JsonValue::Bool(false) => out.push_str("false"),
        JsonValue::Int(i) => {
            let _ = write!(out, "{i}");
        }
        JsonValue::BigInt(s) => out.push_str(s),
        JsonValue::Float(f) => write_python_float(out, *f),
        JsonValue::String(s) => write_string(out, s),
        JsonValue::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, item);
            }
            out.push(']');
        }
        JsonValue::Object(o) => write_object(out, o),
    }
}

fn write_object(out: &mut String, o: &JsonObject) {
    out.push('{');
    for (i, (k, v)) in o.entries.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_string(out, k);
        out.push_str(": ");
        write_value(out, v);
    }
    out.push('}');
}

/// `ensure_ascii=True` string escaping: printable ASCII stays, the rest is `\uXXXX` (lower-case
/// hex, UTF-16 surrogate pairs above the BMP), with the short escapes Python uses.
fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// Python's `float.__repr__`: the shortest digits that round-trip, in fixed notation when the
/// decimal exponent is in -4..16 (with `.0` for integral values), otherwise `d.ddde+XX`.
/// Non-finite values are written as `json.dumps` does (`NaN`, `Infinity`, `-Infinity`).
pub fn write_python_float(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str("NaN");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    // Rust's `{:e}` gives the shortest round-trip digits as `d.ddde<exp>`, like Python's repr.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let digits = break_tie_to_even(f.abs(), digits, exp);
    let decpt = exp + 1; // position of the decimal point relative to the first digit
    if f.is_sign_negative() {
        out.push('-');
    }
    let n = digits.len() as i32;
    if decpt > -4 && decpt <= 16 {
        if decpt <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-decpt) as usize));
            out.push_str(&digits);
        } else if decpt < n {
            out.push_str(&digits[..decpt as usize]);
            out.push('.');
            out.push_str(&digits[decpt as usize..]);
        } else {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', (decpt - n) as usize));
            out.push_str(".0");
        }
    } else {
        out.push_str(&digits[..1]);
        if n > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(
            out,
            "e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.unsigned_abs()
        );
    }
}

/// When the float lies exactly halfway between two shortest candidates, Python (David Gay's
/// dtoa) picks the one with an even last digit, where Rust's shortest formatting rounds up.
/// A tie needs an exact decimal expansion of `digits.len() + 1` digits ending in 5, which a
/// 40-digit rendering screens for cheaply and an 800-digit one (every f64's exact expansion has
/// at most 767 significant digits) confirms.
fn break_tie_to_even(f: f64, digits: String, exp: i32) -> String {
    let n = digits.len();
    if digits.as_bytes()[n - 1] % 2 == 0 {
        return digits; // in a tie Python's choice is the even one, which this already is
    }
    let tie_below = |precision: usize| -> Option<String> {
        let s = format!("{f:.precision$e}");
        let (m, e) = s.split_once('e')?;
        let m: String = m.chars().filter(|c| *c != '.').collect();
        let tie = e.parse::<i32>().ok()? == exp
            && m.len() > n
            && m.as_bytes()[n] == b'5'
            && m[n + 1..].bytes().all(|b| b == b'0');
        tie.then(|| m[..n].to_string())
    };
    if tie_below(40).is_none() {
        return digits;
    }
    let Some(below) = tie_below(800) else {
        return digits;
    };
    if below != digits {
        return below; // Rust rounded up to the odd candidate; the even one is below
    }
    // Rust rounded down to the odd candidate: the even one is one unit up (unless that carries
    // into a new digit, which cannot be a same-length tie partner).
    let mut up = below.into_bytes();
    for b in up.iter_mut().rev() {
        if *b == b'9' {
            *b = b'0';
        } else {
            *b += 1;
            return String::from_utf8(up).unwrap_or(digits);
        }
    }
    digits
}

// ---- reading ----

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, what: &'static str) -> JsonError {
        JsonError {
            offset: self.pos,
            what,
        }
    }

    fn skip_ws(&mut self) {
        while matches!(self.s.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, lit: &[u8]) -> bool {
        if self.s[self.pos..].starts_with(lit) {
            self.pos += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<JsonValue, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        match self.s.get(self.pos) {
            None => Err(self.err("expected a value, found end of input")),
            Some(b'{') => self.object(depth).map(JsonValue::Object),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(JsonValue::String),
            Some(b'-' | b'0'..=b'9') => {
                if self.eat(b"-Infinity") {
                    Ok(JsonValue::Float(f64::NEG_INFINITY))
                } else {
                    self.number()
                }
            }
            Some(_) => {
                if self.eat(b"null") {
                    Ok(JsonValue::Null)
                } else if self.eat(b"true") {
                    Ok(JsonValue::Bool(true))
                } else if self.eat(b"false") {
                    Ok(JsonValue::Bool(false))
                } else if self.eat(b"NaN") {
                    Ok(JsonValue::Float(f64::NAN))
                } else if self.eat(b"Infinity") {
                    Ok(JsonValue::Float(f64::INFINITY))
                } else {
                    Err(self.err("expected a value"))
                }
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<JsonObject, JsonError> {
        self.pos += 1; // '{'
        let mut o = JsonObject::new();
        self.skip_ws();
        if self.eat(b"}") {
            return Ok(o);
        }
        loop {
            if self.s.get(self.pos) != Some(&b'"') {
                return Err(self.err("expected a string key"));
            }
            let key = self.string()?;
            self.skip_ws();
            if !self.eat(b":") {
                return Err(self.err("expected ':' after an object key"));
            }
            self.skip_ws();
            let v = self.value(depth + 1)?;
            o.insert(key, v);
            self.skip_ws();
            if self.eat(b",") {
                self.skip_ws();
                continue;
            }
            if self.eat(b"}") {
                return Ok(o);
            }
            return Err(self.err("expected ',' or '}' in an object"));
        }
    }

    fn array(&mut self, depth: usize) -> Result<JsonValue, JsonError> {
        self.pos += 1; // '['
        let mut items = Vec::new();
        self.skip_ws();
        if self.eat(b"]") {
            return Ok(JsonValue::Array(items));
        }
        loop {
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            if self.eat(b",") {
                self.skip_ws();
                continue;
            }
            if self.eat(b"]") {
                return Ok(JsonValue::Array(items));
            }
            return Err(self.err("expected ',' or ']' in an array"));
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.s.get(self.pos), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// Python's number grammar: `-?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?`; an int unless a
    /// fraction or exponent is present. A fraction or exponent without digits ends the number
    /// before it (and the leftover text is then an error), as in Python.
    fn number(&mut self) -> Result<JsonValue, JsonError> {
        let start = self.pos;
        self.eat(b"-");
        match self.s.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.err("expected a digit")),
        }
        let mut is_float = false;
        if self.s.get(self.pos) == Some(&b'.')
            && matches!(self.s.get(self.pos + 1), Some(b'0'..=b'9'))
        {
            self.pos += 1;
            self.digits();
            is_float = true;
        }
        if matches!(self.s.get(self.pos), Some(b'e' | b'E')) {
            let save = self.pos;
            self.pos += 1;
            if matches!(self.s.get(self.pos), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                self.pos = save;
            } else {
                is_float = true;
            }
        }
        let text = &self.text[start..self.pos];
        if is_float {
            let f: f64 = text.parse().map_err(|_| self.err("bad number"))?;
            return Ok(JsonValue::Float(f));
        }
        match text.parse::<i64>() {
            Ok(i) => Ok(JsonValue::Int(i)),
            Err(_) => Ok(JsonValue::BigInt(text.to_string())),
        }
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let h = self
            .s
            .get(self.pos..self.pos + 4)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .ok_or_else(|| self.err("expected four hex digits after \\u"))?;
        let mut v = 0u32;
        for &b in h {
            v = v * 16 + (b as char).to_digit(16).unwrap_or(0);
        }
        self.pos += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, JsonError> {
        self.pos += 1; // opening quote
        let mut out = String::new();
        loop {
            // Copy the run of plain characters in one go.
            let run_start = self.pos;
            while let Some(&b) = self.s.get(self.pos) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            out.push_str(&self.text[run_start..self.pos]);
            match self.s.get(self.pos) {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let esc = self
                        .s
                        .get(self.pos)
                        .copied()
                        .ok_or_else(|| self.err("unterminated string"))?;
                    self.pos += 1;
                    match esc {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xd800..0xdc00).contains(&hi) {
                                if !self.eat(b"\\u") {
                                    return Err(self.err("lone UTF-16 surrogate in string"));
                                }
                                let lo = self.hex4()?;
                                if !(0xdc00..0xe000).contains(&lo) {
                                    return Err(self.err("lone UTF-16 surrogate in string"));
                                }
                                0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
                            } else {
                                hi
                            };
                            let c = char::from_u32(code)
                                .ok_or_else(|| self.err("lone UTF-16 surrogate in string"))?;
                            out.push(c);
                        }
                        _ => return Err(self.err("invalid escape in string")),
                    }
                }
                Some(_) => return Err(self.err("control character in string")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn repr(f: f64) -> String {
        let mut s = String::new();
        write_python_float(&mut s, f);
        s
    }

    #[test]
    fn floats_match_python_repr() {
        for (f, want) in [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (1.5, "1.5"),
            (0.1, "0.1"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (0.000123, "0.000123"),
            (0.0000123, "1.23e-05"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (1_246_663_897.433_627, "1246663897.433627"),
            // exactly halfway between ...191.2 and ...191.3: Python rounds to even
            (659_484_268_996_191.0 + 0.25, "659484268996191.2"),
            (0.5, "0.5"),
            (2.5, "2.5"),
            (1246663897.430218, "1246663897.430218"),
            (1e100, "1e+100"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(repr(f), want, "{f:e}");
        }
    }

    #[test]
    fn dumps_matches_python_layout() {
        let v = JsonValue::parse(br#"{"b": [1, 2.0, "\u00e9\ud83d\ude00"], "a": {}, "c": null, "d": "\"\\\n\u0001\u007f/"}"#).unwrap();
        assert_eq!(
            v.to_python_json(),
            r#"{"b": [1, 2.0, "\u00e9\ud83d\ude00"], "a": {}, "c": null, "d": "\"\\\n\u0001\u007f/"}"#
        );
    }

    #[test]
    fn loads_follows_python_rules() {
        // duplicate keys: last value at first position
        let o = JsonObject::parse(br#"{"a": 1, "b": 2, "a": 3}"#).unwrap();
        assert_eq!(o.to_python_json(), r#"{"a": 3, "b": 2}"#);
        // int vs float; big ints survive; -0 is the int 0
        let v = JsonValue::parse(b"[1, 1.0, 1e2, -0, 123456789012345678901234567890]").unwrap();
        assert_eq!(
            v.to_python_json(),
            "[1, 1.0, 100.0, 0, 123456789012345678901234567890]"
        );
        let v = JsonValue::parse(b"[NaN, Infinity, -Infinity]").unwrap();
        assert_eq!(v.to_python_json(), "[NaN, Infinity, -Infinity]");
        for bad in [
            &b"{"[..],
            b"{\"a\" 1}",
            b"[1,]",
            b"01",
            b"1.",
            b"\"\x01\"",
            b"\"\\ud800\"",
            b"{} x",
            b"",
            b"\xff",
            b"tru",
        ] {
            assert!(JsonValue::parse(bad).is_err(), "{bad:?}");
        }
        assert!(JsonObject::parse(b"[]").is_err());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(100_000);
        assert_eq!(
            JsonValue::parse(deep.as_bytes()).unwrap_err().what,
            "nested too deeply"
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = JsonValue::parse(&bytes);
        }

        #[test]
        fn float_repr_round_trips(bits in any::<u64>()) {
            let f = f64::from_bits(bits);
            prop_assume!(f.is_finite());
            let s = repr(f);
            // Python's repr always reads back as a float (never as an int).
            prop_assert_eq!(JsonValue::parse(s.as_bytes()).unwrap(), JsonValue::Float(f));
        }

        #[test]
        fn strings_round_trip(s in "\\PC*") {
            let v = JsonValue::String(s.clone());
            let text = v.to_python_json();
            prop_assert!(text.is_ascii());
            prop_assert_eq!(JsonValue::parse(text.as_bytes()).unwrap(), v);
        }
    }
}
