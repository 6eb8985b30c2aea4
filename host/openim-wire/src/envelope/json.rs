//! The JSON envelope (`sdkType=js`) exactly as Go's `encoding/json` reads and writes OpenIM's
//! `Req`/`Resp` structs (`S internal/msggateway/encoder.go:56-74`), hand-written because serde
//! matches keys by exact spelling and keeps no record of which spelling matched.
//!
//! Decoding follows Go: keys match a field case-insensitively with Unicode simple case folding
//! (`ſ` U+017F ≡ `s`, `K` U+212A ≡ `k`), unknown keys are ignored, `null` leaves a field at its
//! zero value, numbers must be integers in range, `data` is standard base64 with padding (Go
//! skips `\r`/`\n` in it and accepts non-zero trailing bits) or an array of bytes, invalid UTF-8
//! and lone surrogates in strings become U+FFFD. One deliberate difference: where Go keeps the
//! last of several keys that match one field, this returns an error, because a relay that
//! checked one spelling while OpenIM uses another would be walked around (contract §10.8c).
//!
//! Encoding is byte-for-byte Go 1.22's `json.Marshal` (OpenIM's toolchain, `S go.mod:3`): keys
//! in struct order, `<>&` and U+2028/U+2029 escaped, `\b`/`\f` as short escapes (Go ≤ 1.21
//! wrote `\u0008`/`\u000c`). An empty `data` is written as Go writes what OpenIM puts there: a
//! nil slice (`null`) in error replies, kicks (2002) and background-status replies (2004)
//! (`S internal/msggateway/client.go:216-225,239-261,285-293`, `message_handler.go:260-269`) and
//! in a zero `Req`; a marshalled empty protobuf message (`""`, non-nil) in every other reply.

use base64::Engine;

use super::{Req, Resp, WireError};

/// Go's `maxNestingDepth` (`encoding/json/scanner.go`).
const MAX_DEPTH: usize = 10_000;

/// The three Go field types of the envelopes.
#[derive(Clone, Copy)]
enum Kind {
    Int32,
    Str,
    Bytes,
}

/// A decoded field value.
enum Val {
    Int(i32),
    Str(String),
    Bytes(Vec<u8>),
}

const REQ_FIELDS: [(&str, Kind); 6] = [
    ("reqIdentifier", Kind::Int32),
    ("token", Kind::Str),
    ("sendID", Kind::Str),
    ("operationID", Kind::Str),
    ("msgIncr", Kind::Str),
    ("data", Kind::Bytes),
];

const RESP_FIELDS: [(&str, Kind); 6] = [
    ("reqIdentifier", Kind::Int32),
    ("msgIncr", Kind::Str),
    ("operationID", Kind::Str),
    ("errCode", Kind::Int32),
    ("errMsg", Kind::Str),
    ("data", Kind::Bytes),
];

pub(super) fn decode_req(raw: &[u8]) -> Result<Req, WireError> {
    let mut v = decode_object(raw, &REQ_FIELDS)?.into_iter();
    let mut next = || v.next().flatten();
    Ok(Req {
        req_identifier: int(next()),
        token: string(next()),
        send_id: string(next()),
        operation_id: string(next()),
        msg_incr: string(next()),
        data: bytes(next()),
    })
}

pub(super) fn decode_resp(raw: &[u8]) -> Result<Resp, WireError> {
    let mut v = decode_object(raw, &RESP_FIELDS)?.into_iter();
    let mut next = || v.next().flatten();
    Ok(Resp {
        req_identifier: int(next()),
        msg_incr: string(next()),
        operation_id: string(next()),
        err_code: int(next()),
        err_msg: string(next()),
        data: bytes(next()),
    })
}

fn int(v: Option<Val>) -> i32 {
    match v {
        Some(Val::Int(i)) => i,
        _ => 0,
    }
}

fn string(v: Option<Val>) -> String {
    match v {
        Some(Val::Str(s)) => s,
        _ => String::new(),
    }
}

fn bytes(v: Option<Val>) -> Vec<u8> {
    match v {
        Some(Val::Bytes(b)) => b,
        _ => Vec::new(),
    }
}

pub(super) fn encode_req(req: &Req) -> Vec<u8> {
    let mut out = Vec::with_capacity(96 + req.data.len() * 4 / 3);
    out.extend_from_slice(b"{\"reqIdentifier\":");
    out.extend_from_slice(req.req_identifier.to_string().as_bytes());
    out.extend_from_slice(b",\"token\":");
    write_string(&mut out, &req.token);
    out.extend_from_slice(b",\"sendID\":");
    write_string(&mut out, &req.send_id);
    out.extend_from_slice(b",\"operationID\":");
    write_string(&mut out, &req.operation_id);
    out.extend_from_slice(b",\"msgIncr\":");
    write_string(&mut out, &req.msg_incr);
    out.extend_from_slice(b",\"data\":");
    write_data(&mut out, &req.data, true);
    out.push(b'}');
    out
}

pub(super) fn encode_resp(resp: &Resp) -> Vec<u8> {
    let mut out = Vec::with_capacity(96 + resp.data.len() * 4 / 3);
    out.extend_from_slice(b"{\"reqIdentifier\":");
    out.extend_from_slice(resp.req_identifier.to_string().as_bytes());
    out.extend_from_slice(b",\"msgIncr\":");
    write_string(&mut out, &resp.msg_incr);
    out.extend_from_slice(b",\"operationID\":");
    write_string(&mut out, &resp.operation_id);
    out.extend_from_slice(b",\"errCode\":");
    out.extend_from_slice(resp.err_code.to_string().as_bytes());
    out.extend_from_slice(b",\"errMsg\":");
    write_string(&mut out, &resp.err_msg);
    out.extend_from_slice(b",\"data\":");
    write_data(&mut out, &resp.data, nil_data(resp));
    out.push(b'}');
    out
}

/// Whether OpenIM leaves `Resp.Data` nil (module docs).
fn nil_data(resp: &Resp) -> bool {
    resp.err_code != 0
        || resp.req_identifier == crate::ident::KICK_ONLINE_MSG
        || resp.req_identifier == crate::ident::SET_BACKGROUND_STATUS
}

fn write_data(out: &mut Vec<u8>, data: &[u8], nil_when_empty: bool) {
    if data.is_empty() && nil_when_empty {
        out.extend_from_slice(b"null");
        return;
    }
    out.push(b'"');
    out.extend_from_slice(base64::engine::general_purpose::STANDARD.encode(data).as_bytes());
    out.push(b'"');
}

/// Go 1.22 `encodeState.string` with HTML escaping on (what `json.Marshal` does).
fn write_string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\u{2028}' => out.extend_from_slice(b"\\u2028"),
            '\u{2029}' => out.extend_from_slice(b"\\u2029"),
            c if (c as u32) < 0x20 || c == '<' || c == '>' || c == '&' => {
                let b = c as u32 as u8;
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// Does `key` match the (ASCII) field `name` under Go's folding?
///
/// Go compares the simple case folds of both (`encoding/json/fold.go`). For an ASCII name the
/// only non-ASCII runes that can fold onto it are U+017F (`s`) and U+212A (`k`); every other
/// non-ASCII rune makes the key differ.
fn key_matches(key: &str, name: &str) -> bool {
    let mut want = name.bytes();
    for c in key.chars() {
        let folded = match c {
            '\u{17f}' => b'S',
            '\u{212a}' => b'K',
            c if c.is_ascii() => (c as u8).to_ascii_uppercase(),
            _ => return false,
        };
        if want.next().map(|b| b.to_ascii_uppercase()) != Some(folded) {
            return false;
        }
    }
    want.next().is_none()
}

fn err(msg: impl Into<String>) -> WireError {
    WireError::Json(msg.into())
}

/// Decode a top-level object into one slot per field.
fn decode_object(raw: &[u8], fields: &[(&str, Kind)]) -> Result<Vec<Option<Val>>, WireError> {
    let mut p = Parser { s: raw, i: 0 };
    let mut slots: Vec<Option<Val>> = fields.iter().map(|_| None).collect();
    let mut seen = vec![false; fields.len()];
    p.ws();
    match p.peek() {
        // `null` into a struct leaves it untouched: the zero envelope.
        Some(b'n') => p.literal(b"null")?,
        Some(b'{') => {
            p.i += 1;
            p.ws();
            if p.peek() == Some(b'}') {
                p.i += 1;
            } else {
                loop {
                    p.ws();
                    if p.peek() != Some(b'"') {
                        return Err(err("object key must be a string"));
                    }
                    let key = p.string()?;
                    p.ws();
                    p.expect(b':')?;
                    p.ws();
                    match fields.iter().position(|(name, _)| key_matches(&key, name)) {
                        Some(f) => {
                            if std::mem::replace(&mut seen[f], true) {
                                return Err(err(format!("ambiguous: more than one key for field {}", fields[f].0)));
                            }
                            slots[f] = p.typed(fields[f].1)?;
                        }
                        None => p.skip_value()?,
                    }
                    p.ws();
                    match p.next() {
                        Some(b',') => continue,
                        Some(b'}') => break,
                        _ => return Err(err("expected , or } in object")),
                    }
                }
            }
        }
        Some(_) => return Err(err("cannot unmarshal a non-object into the envelope")),
        None => return Err(err("unexpected end of JSON input")),
    }
    p.ws();
    if p.i != raw.len() {
        return Err(err("invalid character after top-level value"));
    }
    Ok(slots)
}

/// A JSON reader over bytes, following Go's scanner grammar.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek();
        self.i += usize::from(b.is_some());
        b
    }

    fn expect(&mut self, b: u8) -> Result<(), WireError> {
        if self.next() == Some(b) {
            Ok(())
        } else {
            Err(err(format!("expected {:?}", b as char)))
        }
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn literal(&mut self, lit: &[u8]) -> Result<(), WireError> {
        if self.s[self.i..].starts_with(lit) {
            self.i += lit.len();
            Ok(())
        } else {
            Err(err("invalid literal"))
        }
    }

    /// A value for a field of `kind`; `None` for `null` (the field keeps its zero value).
    fn typed(&mut self, kind: Kind) -> Result<Option<Val>, WireError> {
        if self.peek() == Some(b'n') {
            self.literal(b"null")?;
            return Ok(None);
        }
        match (kind, self.peek()) {
            (Kind::Int32, Some(b'-' | b'0'..=b'9')) => {
                let n = self.number()?;
                let v: i64 = n.parse().map_err(|_| err(format!("cannot unmarshal number {n} into int32")))?;
                let v = i32::try_from(v).map_err(|_| err(format!("number {n} overflows int32")))?;
                Ok(Some(Val::Int(v)))
            }
            (Kind::Str, Some(b'"')) => Ok(Some(Val::Str(self.string()?))),
            (Kind::Bytes, Some(b'"')) => {
                let s = self.string()?;
                Ok(Some(Val::Bytes(go_base64(&s)?)))
            }
            (Kind::Bytes, Some(b'[')) => Ok(Some(Val::Bytes(self.byte_array()?))),
            _ => Err(err("cannot unmarshal value: wrong type for field")),
        }
    }

    /// `[n, …]` into `[]byte`: each element an integer 0..=255, `null` elements stay 0.
    fn byte_array(&mut self) -> Result<Vec<u8>, WireError> {
        self.expect(b'[')?;
        let mut out = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(out);
        }
        loop {
            self.ws();
            match self.peek() {
                Some(b'n') => {
                    self.literal(b"null")?;
                    out.push(0);
                }
                Some(b'-' | b'0'..=b'9') => {
                    let n = self.number()?;
                    out.push(n.parse::<u8>().map_err(|_| err(format!("cannot unmarshal number {n} into uint8")))?);
                }
                _ => return Err(err("cannot unmarshal value into uint8")),
            }
            self.ws();
            match self.next() {
                Some(b',') => continue,
                Some(b']') => return Ok(out),
                _ => return Err(err("expected , or ] in array")),
            }
        }
    }

    /// A number token per the JSON grammar, returned as text.
    fn number(&mut self) -> Result<&str, WireError> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.next() {
            Some(b'0') => {}
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(err("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(err("invalid number"));
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(err("invalid number"));
            }
            self.digits();
        }
        // The token is ASCII by construction.
        std::str::from_utf8(&self.s[start..self.i]).map_err(|_| err("invalid number"))
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
    }

    /// A string token, unquoted as Go does (invalid UTF-8 and bad surrogates → U+FFFD).
    fn string(&mut self) -> Result<String, WireError> {
        self.expect(b'"')?;
        let mut out = String::new();
        loop {
            let run_start = self.i;
            while matches!(self.peek(), Some(b) if b != b'"' && b != b'\\' && b >= 0x20) {
                self.i += 1;
            }
            push_lossy(&mut out, &self.s[run_start..self.i]);
            match self.next() {
                Some(b'"') => return Ok(out),
                Some(b'\\') => self.escape(&mut out)?,
                Some(_) => return Err(err("invalid control character in string")),
                None => return Err(err("unexpected end of JSON input")),
            }
        }
    }

    fn escape(&mut self, out: &mut String) -> Result<(), WireError> {
        let c = match self.next() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                let hi = self.hex4()?;
                if !(0xD800..0xE000).contains(&hi) {
                    char::from_u32(hi).unwrap_or('\u{fffd}')
                } else if (0xD800..0xDC00).contains(&hi) && self.s[self.i..].starts_with(b"\\u") {
                    // Only a following low surrogate is consumed with it.
                    let save = self.i;
                    self.i += 2;
                    let lo = self.hex4()?;
                    if (0xDC00..0xE000).contains(&lo) {
                        char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)).unwrap_or('\u{fffd}')
                    } else {
                        self.i = save;
                        '\u{fffd}'
                    }
                } else {
                    '\u{fffd}'
                }
            }
            _ => return Err(err("invalid escape in string")),
        };
        out.push(c);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, WireError> {
        let h = self.s.get(self.i..self.i + 4).ok_or_else(|| err("invalid \\u escape"))?;
        let mut v = 0u32;
        for &b in h {
            let d = (b as char).to_digit(16).ok_or_else(|| err("invalid \\u escape"))?;
            v = v * 16 + d;
        }
        self.i += 4;
        Ok(v)
    }

    /// Skip any value (validating it), iteratively so that deep nesting cannot overflow the
    /// stack; nesting deeper than Go's limit is an error as in Go.
    fn skip_value(&mut self) -> Result<(), WireError> {
        // Open containers: true = object, false = array.
        let mut stack: Vec<bool> = Vec::new();
        loop {
            self.ws();
            match self.peek() {
                Some(open @ (b'{' | b'[')) => {
                    // Levels: the envelope object, the open containers, this one.
                    if stack.len() + 2 > MAX_DEPTH {
                        return Err(err("exceeded max depth"));
                    }
                    let is_object = open == b'{';
                    self.i += 1;
                    self.ws();
                    if self.peek() == Some(if is_object { b'}' } else { b']' }) {
                        self.i += 1;
                    } else {
                        stack.push(is_object);
                        if is_object {
                            self.key()?;
                        }
                        continue;
                    }
                }
                Some(b'"') => {
                    self.string()?;
                }
                Some(b'-' | b'0'..=b'9') => {
                    self.number()?;
                }
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                _ => return Err(err("invalid value")),
            }
            // A value is complete: close containers or move to their next element.
            loop {
                let Some(&is_object) = stack.last() else { return Ok(()) };
                self.ws();
                match (self.next(), is_object) {
                    (Some(b','), true) => {
                        self.key()?;
                        break;
                    }
                    (Some(b','), false) => break,
                    (Some(b'}'), true) | (Some(b']'), false) => {
                        stack.pop();
                    }
                    _ => return Err(err("invalid character in container")),
                }
            }
        }
    }

    /// `"key" :` inside an object being skipped.
    fn key(&mut self) -> Result<(), WireError> {
        self.ws();
        if self.peek() != Some(b'"') {
            return Err(err("object key must be a string"));
        }
        self.string()?;
        self.ws();
        self.expect(b':')
    }
}

/// Append bytes as UTF-8, each invalid byte becoming U+FFFD (Go's `utf8.DecodeRune` advances one
/// byte on error, unlike `String::from_utf8_lossy`, which swallows a truncated sequence whole).
fn push_lossy(out: &mut String, mut bytes: &[u8]) {
    loop {
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                out.push_str(s);
                return;
            }
            Err(e) => {
                let (valid, rest) = bytes.split_at(e.valid_up_to());
                // `valid` is valid UTF-8 by the error's contract.
                out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                out.push('\u{fffd}');
                bytes = rest.get(1..).unwrap_or_default();
            }
        }
    }
}

/// Go's `base64.StdEncoding.Decode`: padding required, `\r` and `\n` skipped anywhere, non-zero
/// trailing bits accepted.
fn go_base64(s: &str) -> Result<Vec<u8>, WireError> {
    use base64::engine::{general_purpose::GeneralPurpose, DecodePaddingMode, GeneralPurposeConfig};
    const GO_STD: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::RequireCanonical)
            .with_decode_allow_trailing_bits(true),
    );
    let cleaned: Vec<u8> = s.bytes().filter(|b| !matches!(b, b'\r' | b'\n')).collect();
    GO_STD.decode(cleaned).map_err(|e| err(format!("illegal base64 data: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> Result<Req, WireError> {
        decode_req(s.as_bytes())
    }

    #[test]
    fn keys_fold_like_go() {
        let r = req(r#"{"REQIDENTIFIER":1003,"ſendID":"u1","TOKEN":"t","operationid":"o","MsgIncr":"m"}"#).unwrap();
        assert_eq!((r.req_identifier, r.send_id.as_str(), r.token.as_str()), (1003, "u1", "t"));
        assert_eq!((r.operation_id.as_str(), r.msg_incr.as_str()), ("o", "m"));
        // Kelvin sign for k, long s for s, escapes resolved before matching.
        let r = req("{\"to\u{212a}en\":\"x\",\"\\u017fendid\":\"y\"}").unwrap();
        assert_eq!((r.token.as_str(), r.send_id.as_str()), ("x", "y"));
        // Other look-alikes do not fold onto ASCII (dotless ı, Turkish İ, fullwidth s).
        let r = req("{\"sendıD\":\"a\",\"İd\":1,\"ｓendID\":\"b\"}").unwrap();
        assert_eq!(r.send_id, "");
        // Unknown keys of any shape are ignored.
        let r = req(r#"{"x":{"a":[1,2,{"b":null}]},"sendID":"u","y":-1.5e3,"z":[true,false]}"#).unwrap();
        assert_eq!(r.send_id, "u");
    }

    #[test]
    fn two_keys_for_one_field_are_refused() {
        for s in [
            r#"{"sendID":"a","sendID":"b"}"#,
            r#"{"sendID":"a","SENDID":"b"}"#,
            "{\"sendID\":\"a\",\"\u{17f}endID\":\"b\"}",
            r#"{"data":null,"Data":"AA=="}"#,
            r#"{"reqIdentifier":1,"reqidentifier":null}"#,
        ] {
            let e = req(s).unwrap_err();
            assert!(matches!(&e, WireError::Json(m) if m.contains("ambiguous")), "{s}: {e:?}");
        }
    }

    #[test]
    fn wrong_types_are_errors() {
        for s in [
            r#"{"reqIdentifier":"1003"}"#,
            r#"{"reqIdentifier":1003.0}"#,
            r#"{"reqIdentifier":1e3}"#,
            r#"{"reqIdentifier":2147483648}"#,
            r#"{"reqIdentifier":true}"#,
            r#"{"sendID":1}"#,
            r#"{"sendID":["u1"]}"#,
            r#"{"data":1}"#,
            r#"{"data":"AQ"}"#,
            r#"{"data":"A==="}"#,
            r#"{"data":[256]}"#,
            r#"{"data":[-1]}"#,
            r#"{"data":[1.5]}"#,
            r#"{"data":["a"]}"#,
            r#"[]"#,
            r#""x""#,
            r#"{"sendID":"a"} x"#,
            r#"{"sendID":"a",}"#,
            r#"{"sendID":"a""#,
            "{\"sendID\":\"a\u{1}\"}",
            r#"{"x":01}"#,
            r#"{"x":[1,]}"#,
            "",
        ] {
            assert!(req(s).is_err(), "{s:?} should be refused");
        }
    }

    #[test]
    fn go_value_rules() {
        // null keeps the zero value; -0 is 0; limits of int32.
        let r = req(r#" {"reqIdentifier":null,"sendID":null,"data":null} "#).unwrap();
        assert_eq!(r, Req::default());
        assert_eq!(req("null").unwrap(), Req::default());
        assert_eq!(req(r#"{"reqIdentifier":-0}"#).unwrap().req_identifier, 0);
        assert_eq!(req(r#"{"reqIdentifier":-2147483648}"#).unwrap().req_identifier, i32::MIN);
        // base64: newlines skipped, trailing bits tolerated; arrays of bytes.
        assert_eq!(req(r#"{"data":"AQ\nI=\r"}"#).unwrap().data, vec![1, 2]);
        assert_eq!(req(r#"{"data":"AB=="}"#).unwrap().data, vec![0]);
        assert_eq!(req(r#"{"data":[1,null,255]}"#).unwrap().data, vec![1, 0, 255]);
        // Strings: escapes, surrogate pairs, lone surrogates and invalid UTF-8 become U+FFFD.
        assert_eq!(req(r#"{"sendID":"\ud83d\ude00\u00e9\/"}"#).unwrap().send_id, "😀é/");
        assert_eq!(req(r#"{"sendID":"\ud800x\udc00"}"#).unwrap().send_id, "\u{fffd}x\u{fffd}");
        assert_eq!(req(r#"{"sendID":"\ud800\u0041"}"#).unwrap().send_id, "\u{fffd}A");
        let raw = b"{\"sendID\":\"a\xe4\xb8b\xff\"}";
        assert_eq!(decode_req(raw).unwrap().send_id, "a\u{fffd}\u{fffd}b\u{fffd}");
    }

    #[test]
    fn deep_nesting_is_bounded_and_does_not_overflow() {
        // Go counts the envelope object as the first level.
        let deep = format!("{{\"x\":{}{}}}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(req(&deep).is_err());
        let ok = format!("{{\"x\":{}{},\"sendID\":\"u\"}}", "[".repeat(MAX_DEPTH - 1), "]".repeat(MAX_DEPTH - 1));
        assert_eq!(req(&ok).unwrap().send_id, "u");
    }

    #[test]
    fn corrupted_input_never_panics() {
        let good = encode_req(&Req {
            req_identifier: 1003,
            send_id: "ſ😀\u{1}".into(),
            data: vec![1, 2, 3, 250],
            ..Req::default()
        });
        for i in 0..good.len() {
            let _ = decode_req(&good[..i]);
            for bit in 0..8 {
                let mut b = good.clone();
                b[i] ^= 1 << bit;
                let _ = decode_req(&b);
                let _ = decode_resp(&b);
            }
        }
    }

    #[test]
    fn encoding_is_go_122() {
        let r = Req {
            req_identifier: -1,
            send_id: "<a>&\"\\\n\r\t\u{8}\u{c}\u{1}\u{7f}\u{2028}é".into(),
            ..Req::default()
        };
        assert_eq!(
            String::from_utf8(encode_req(&r)).unwrap(),
            r#"{"reqIdentifier":-1,"token":"","sendID":"\u003ca\u003e\u0026\"\\\n\r\t\b\f\u0001"#.to_string()
                + "\u{7f}"
                + r#"\u2028é","operationID":"","msgIncr":"","data":null}"#
        );
        let ok = Resp { req_identifier: 1001, ..Resp::default() };
        assert!(String::from_utf8(encode_resp(&ok)).unwrap().ends_with(r#""errMsg":"","data":""}"#));
        for nil in [
            Resp { req_identifier: 1003, err_code: 1001, err_msg: "ArgsError".into(), ..Resp::default() },
            Resp { req_identifier: 2002, ..Resp::default() },
            Resp { req_identifier: 2004, ..Resp::default() },
        ] {
            assert!(String::from_utf8(encode_resp(&nil)).unwrap().ends_with(r#","data":null}"#));
        }
        let r = Resp { data: vec![1, 2, 3], ..Resp::default() };
        assert_eq!(decode_resp(&encode_resp(&r)).unwrap(), r);
    }
}
