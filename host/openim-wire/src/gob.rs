//! Go `encoding/gob` for exactly OpenIM's two envelope structs (`Req`, `Resp`): what OpenIM's Go
//! SDK core (wasm, Electron, mobile) speaks by default (`sdkType=go`, contract §5.4). One fresh
//! encoder per frame, so every frame carries its type definition.
//!
//! Hand-written: the crates.io `gob` crate (0.1.0, 2018, bytes 0.4) is unmaintained, and
//! `gobwire` is a generic, merge-decoding codec; a relay wants a small strict one.
//!
//! A frame is a sequence of messages, each `uint(length) body`. A body starts with an `int` type
//! id: negative = the definition of type `-id` follows (a `wireType` value), positive = a value
//! of that type follows. Unsigned integers are one byte below 128, else a negated byte count
//! and big-endian bytes; signed ones are zig-zag folded into that (`i << 1`, or `(!i << 1) | 1`
//! when negative). A struct value is a list of `uint(field delta) value` ending with a 0 delta;
//! zero-valued fields are omitted. Type ids: `int` (every Go int size) = 2, `[]byte` = 5,
//! `string` = 6; user types from 65 (`encoding/gob/type.go`).
//!
//! Encoding is what a fresh Go process writes when the envelope is the first type it encodes
//! (id 65, the case of OpenIM's server for `Resp` and of the Go SDK for `GeneralWsReq`), with
//! OpenIM's struct names `Req`/`Resp` and field order (`S internal/msggateway/
//! message_handler.go:43-50,83-90`).
//!
//! Decoding accepts what Go produces for these structs in any process: any user type id, any
//! struct name, fields in any order (the SDK's `GeneralWsResp` orders them differently),
//! omitted fields, non-minimal integer encodings (Go accepts them). It refuses, where Go would
//! accept, streams Go never writes for them: unknown or duplicated field names, type
//! definitions that are not structs, unused extra type definitions beyond a handful, a value
//! without its terminating 0 delta, empty messages, and trailing bytes after the value (Go
//! leaves them unread). Strings must be UTF-8 (Go does not check; a Rust `String` cannot hold
//! anything else, and a relay should not alter bytes). Integers outside `i32` are refused, as
//! Go refuses them for OpenIM's `int32` fields. Lengths are checked against the input before
//! anything is allocated; nothing panics.

use crate::{Req, Resp, WireError};

/// Go's builtin type ids (`encoding/gob/type.go`).
const T_INT: u64 = 2;
const T_BYTES: u64 = 5;
const T_STRING: u64 = 6;
/// Ids below this are Go's own (`firstUserId`).
const FIRST_USER_ID: u64 = 64;
/// The id a fresh Go process gives the first type it encodes.
const OUR_ID: i64 = 65;
/// `wireType` field index of `StructT`.
const WIRE_STRUCT_T: u64 = 2;
/// Type definitions accepted per frame (Go writes one for these structs).
const MAX_TYPES: usize = 8;

/// A Go field type of the envelopes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Str,
    Bytes,
}

impl Kind {
    fn id(self) -> u64 {
        match self {
            Kind::Int => T_INT,
            Kind::Str => T_STRING,
            Kind::Bytes => T_BYTES,
        }
    }
}

const REQ_FIELDS: [(&str, Kind); 6] = [
    ("ReqIdentifier", Kind::Int),
    ("Token", Kind::Str),
    ("SendID", Kind::Str),
    ("OperationID", Kind::Str),
    ("MsgIncr", Kind::Str),
    ("Data", Kind::Bytes),
];

const RESP_FIELDS: [(&str, Kind); 6] = [
    ("ReqIdentifier", Kind::Int),
    ("MsgIncr", Kind::Str),
    ("OperationID", Kind::Str),
    ("ErrCode", Kind::Int),
    ("ErrMsg", Kind::Str),
    ("Data", Kind::Bytes),
];

/// A field value, borrowed for encoding.
enum Val<'a> {
    Int(i64),
    Str(&'a str),
    Bytes(&'a [u8]),
}

/// Encode a `Req` as a fresh Go encoder would.
pub fn encode_req(req: &Req) -> Vec<u8> {
    let values = [
        Val::Int(req.req_identifier.into()),
        Val::Str(&req.token),
        Val::Str(&req.send_id),
        Val::Str(&req.operation_id),
        Val::Str(&req.msg_incr),
        Val::Bytes(&req.data),
    ];
    encode("Req", &REQ_FIELDS, &values)
}

/// Encode a `Resp` as a fresh Go encoder would.
pub fn encode_resp(resp: &Resp) -> Vec<u8> {
    let values = [
        Val::Int(resp.req_identifier.into()),
        Val::Str(&resp.msg_incr),
        Val::Str(&resp.operation_id),
        Val::Int(resp.err_code.into()),
        Val::Str(&resp.err_msg),
        Val::Bytes(&resp.data),
    ];
    encode("Resp", &RESP_FIELDS, &values)
}

/// Decode one `Req` frame.
pub fn decode_req(raw: &[u8]) -> Result<Req, WireError> {
    let mut v = decode(raw, &REQ_FIELDS)?.into_iter();
    let mut next = || v.next().unwrap_or(Slot::Absent);
    Ok(Req {
        req_identifier: next().int()?,
        token: next().string()?,
        send_id: next().string()?,
        operation_id: next().string()?,
        msg_incr: next().string()?,
        data: next().bytes(),
    })
}

/// Decode one `Resp` frame.
pub fn decode_resp(raw: &[u8]) -> Result<Resp, WireError> {
    let mut v = decode(raw, &RESP_FIELDS)?.into_iter();
    let mut next = || v.next().unwrap_or(Slot::Absent);
    Ok(Resp {
        req_identifier: next().int()?,
        msg_incr: next().string()?,
        operation_id: next().string()?,
        err_code: next().int()?,
        err_msg: next().string()?,
        data: next().bytes(),
    })
}

// ---- encoding ----

fn put_uint(out: &mut Vec<u8>, x: u64) {
    if x < 0x80 {
        out.push(x as u8);
        return;
    }
    let be = x.to_be_bytes();
    let skip = be.iter().take_while(|b| **b == 0).count();
    out.push((skip as u8).wrapping_sub(8)); // -(8 - skip) as a byte
    out.extend_from_slice(&be[skip..]);
}

fn put_int(out: &mut Vec<u8>, i: i64) {
    let u = if i < 0 { (!(i as u64) << 1) | 1 } else { (i as u64) << 1 };
    put_uint(out, u);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_uint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Append `body` as one message.
fn put_message(out: &mut Vec<u8>, body: &[u8]) {
    put_uint(out, body.len() as u64);
    out.extend_from_slice(body);
}

fn encode(name: &str, fields: &[(&str, Kind)], values: &[Val<'_>]) -> Vec<u8> {
    // The type definition: -id, then wireType{StructT: &structType{CommonType{Name, Id}, Field}}.
    let mut def = Vec::with_capacity(128);
    put_int(&mut def, -OUR_ID);
    put_uint(&mut def, WIRE_STRUCT_T + 1); // delta from -1 to field 2
    put_uint(&mut def, 1); // structType.CommonType
    put_uint(&mut def, 1); // CommonType.Name
    put_bytes(&mut def, name.as_bytes());
    put_uint(&mut def, 1); // CommonType.Id
    put_int(&mut def, OUR_ID);
    put_uint(&mut def, 0);
    put_uint(&mut def, 1); // structType.Field
    put_uint(&mut def, fields.len() as u64);
    for (field, kind) in fields {
        put_uint(&mut def, 1); // fieldType.Name
        put_bytes(&mut def, field.as_bytes());
        put_uint(&mut def, 1); // fieldType.Id
        put_int(&mut def, kind.id() as i64);
        put_uint(&mut def, 0);
    }
    put_uint(&mut def, 0); // end of structType
    put_uint(&mut def, 0); // end of wireType

    // The value: id, then the non-zero fields as (delta, value), then 0.
    let mut val =
        Vec::with_capacity(32 + values.iter().map(|v| if let Val::Bytes(b) = v { b.len() } else { 16 }).sum::<usize>());
    put_int(&mut val, OUR_ID);
    let mut last: i64 = -1;
    for (i, v) in values.iter().enumerate() {
        let i = i as i64;
        let empty = match v {
            Val::Int(x) => *x == 0,
            Val::Str(s) => s.is_empty(),
            Val::Bytes(b) => b.is_empty(),
        };
        if empty {
            continue;
        }
        put_uint(&mut val, (i - last) as u64);
        last = i;
        match v {
            Val::Int(x) => put_int(&mut val, *x),
            Val::Str(s) => put_bytes(&mut val, s.as_bytes()),
            Val::Bytes(b) => put_bytes(&mut val, b),
        }
    }
    put_uint(&mut val, 0);

    let mut out = Vec::with_capacity(def.len() + val.len() + 10);
    put_message(&mut out, &def);
    put_message(&mut out, &val);
    out
}

// ---- decoding ----

fn err(msg: impl Into<String>) -> WireError {
    WireError::Gob(msg.into())
}

/// A decoded field: absent (zero value) or its raw value.
enum Slot {
    Absent,
    Int(i64),
    Bytes(Vec<u8>),
}

impl Slot {
    fn int(self) -> Result<i32, WireError> {
        match self {
            Slot::Int(i) => i32::try_from(i).map_err(|_| err(format!("value {i} out of range for int32"))),
            _ => Ok(0),
        }
    }

    fn string(self) -> Result<String, WireError> {
        match self {
            Slot::Bytes(b) => String::from_utf8(b).map_err(|_| err("string field is not UTF-8")),
            _ => Ok(String::new()),
        }
    }

    fn bytes(self) -> Vec<u8> {
        match self {
            Slot::Bytes(b) => b,
            _ => Vec::new(),
        }
    }
}

/// A cursor over a byte slice with gob's primitive readers.
struct Reader<'a> {
    s: &'a [u8],
}

impl<'a> Reader<'a> {
    fn is_empty(&self) -> bool {
        self.s.is_empty()
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], WireError> {
        let n = usize::try_from(n).map_err(|_| err("length out of range"))?;
        if n > self.s.len() {
            return Err(err("length exceeds input"));
        }
        let (head, tail) = self.s.split_at(n);
        self.s = tail;
        Ok(head)
    }

    fn uint(&mut self) -> Result<u64, WireError> {
        let (&first, rest) = self.s.split_first().ok_or_else(|| err("unexpected end of data"))?;
        self.s = rest;
        if first < 0x80 {
            return Ok(u64::from(first));
        }
        let n = u64::from(first.wrapping_neg());
        if n > 8 {
            return Err(err("encoded unsigned integer out of range"));
        }
        Ok(self.take(n)?.iter().fold(0u64, |x, b| (x << 8) | u64::from(*b)))
    }

    fn int(&mut self) -> Result<i64, WireError> {
        let u = self.uint()?;
        let i = (u >> 1) as i64;
        Ok(if u & 1 != 0 { !i } else { i })
    }

    fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.uint()?;
        self.take(n)
    }

    /// Struct fields of a nested struct, as (field index, reader positioned at the value); the
    /// callback reads the value. Ends at the 0 delta; indices must stay below `count`.
    fn fields(
        &mut self,
        count: u64,
        mut f: impl FnMut(&mut Self, u64) -> Result<(), WireError>,
    ) -> Result<(), WireError> {
        let mut field: i64 = -1;
        loop {
            let delta = self.uint()?;
            if delta == 0 {
                return Ok(());
            }
            let next = i64::try_from(delta).ok().and_then(|d| field.checked_add(d)).filter(|n| (*n as u64) < count);
            field = next.ok_or_else(|| err("field numbers out of bounds"))?;
            f(self, field as u64)?;
        }
    }
}

/// A received struct type: its fields as (name, type id).
type WireStruct = Vec<(String, u64)>;

/// Parse a `wireType` value; only `StructT` definitions are accepted.
fn parse_wire_type(r: &mut Reader<'_>) -> Result<WireStruct, WireError> {
    let mut found = None;
    r.fields(7, |r, f| {
        if f != WIRE_STRUCT_T {
            return Err(err("only struct type definitions are supported"));
        }
        found = Some(parse_struct_type(r)?);
        Ok(())
    })?;
    found.ok_or_else(|| err("empty type definition"))
}

/// `structType{CommonType{Name string; Id int}; Field []*fieldType}`.
fn parse_struct_type(r: &mut Reader<'_>) -> Result<WireStruct, WireError> {
    let mut fields = Vec::new();
    r.fields(2, |r, f| {
        if f == 0 {
            // CommonType: the name and id are not checked, as in Go.
            return r.fields(2, |r, f| if f == 0 { r.bytes().map(drop) } else { r.int().map(drop) });
        }
        let n = r.uint()?;
        // Each element takes at least one byte: a bound before allocating.
        if n > r.s.len() as u64 {
            return Err(err("slice length exceeds input"));
        }
        for _ in 0..n {
            let (mut name, mut id) = (Vec::new(), 0i64);
            r.fields(2, |r, f| {
                if f == 0 {
                    name = r.bytes()?.to_vec();
                } else {
                    id = r.int()?;
                }
                Ok(())
            })?;
            let name = String::from_utf8(name).map_err(|_| err("field name is not UTF-8"))?;
            let id = u64::try_from(id).map_err(|_| err("negative field type id"))?;
            fields.push((name, id));
        }
        Ok(())
    })?;
    Ok(fields)
}

/// Map each wire field to a local field index, refusing anything not exactly ours.
fn compile(wire: &WireStruct, local: &[(&str, Kind)]) -> Result<Vec<usize>, WireError> {
    let mut map = Vec::with_capacity(wire.len());
    let mut used = vec![false; local.len()];
    for (name, id) in wire {
        if name.is_empty() {
            return Err(err("empty name for remote field"));
        }
        let i = local.iter().position(|(n, _)| n == name).ok_or_else(|| err(format!("unknown field {name}")))?;
        if *id != local[i].1.id() {
            return Err(err(format!("wrong type for received field {name}")));
        }
        if std::mem::replace(&mut used[i], true) {
            return Err(err(format!("field {name} defined twice")));
        }
        map.push(i);
    }
    if map.is_empty() {
        return Err(err("type mismatch: no fields matched"));
    }
    Ok(map)
}

fn decode(raw: &[u8], local: &[(&str, Kind)]) -> Result<Vec<Slot>, WireError> {
    let mut r = Reader { s: raw };
    let mut types: Vec<(u64, WireStruct)> = Vec::new();
    loop {
        if r.is_empty() {
            return Err(err("no value in stream"));
        }
        let len = r.uint()?;
        if len == 0 {
            return Err(err("empty message"));
        }
        let mut m = Reader { s: r.take(len)? };
        let id = m.int()?;
        if id < 0 {
            let id = id.unsigned_abs();
            if id < FIRST_USER_ID || types.iter().any(|(t, _)| *t == id) {
                return Err(err("duplicate type received"));
            }
            if types.len() == MAX_TYPES {
                return Err(err("too many type definitions"));
            }
            let wire = parse_wire_type(&mut m)?;
            if !m.is_empty() {
                return Err(err("extra data in buffer"));
            }
            types.push((id, wire));
            continue;
        }
        let id = id as u64;
        let wire = types.iter().find(|(t, _)| *t == id).map(|(_, w)| w).ok_or_else(|| err("unknown type id"))?;
        let map = compile(wire, local)?;
        let slots = decode_value(&mut m, wire, &map, local)?;
        if !m.is_empty() || !r.is_empty() {
            return Err(err("trailing data after the value"));
        }
        return Ok(slots);
    }
}

fn decode_value(
    m: &mut Reader<'_>,
    wire: &WireStruct,
    map: &[usize],
    local: &[(&str, Kind)],
) -> Result<Vec<Slot>, WireError> {
    let mut slots: Vec<Slot> = local.iter().map(|_| Slot::Absent).collect();
    m.fields(wire.len() as u64, |m, f| {
        let i = map[f as usize];
        slots[i] = match local[i].1 {
            Kind::Int => Slot::Int(m.int()?),
            Kind::Str | Kind::Bytes => Slot::Bytes(m.bytes()?.to_vec()),
        };
        Ok(())
    })?;
    Ok(slots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// Go 1.19 `gob.NewEncoder(&b).Encode(Req{ReqIdentifier: 1001, SendID: "u1", Data: {1, 2}})`
    /// in a fresh process (the golden test checks many more against Go itself).
    const GO_REQ: &str = "5dff810301010352657101ff82000106010d5265714964656e7469666965720104000105546f6b656e010c00010653656e644944010c00010b4f7065726174696f6e4944010c0001074d7367496e6372010c00010444617461010a0000000fff8201fe07d2020275310302010200";

    #[test]
    fn matches_go_bytes() {
        let req = Req { req_identifier: 1001, send_id: "u1".into(), data: vec![1, 2], ..Req::default() };
        assert_eq!(encode_req(&req), hex(GO_REQ));
        assert_eq!(decode_req(&hex(GO_REQ)).unwrap(), req);
    }

    #[test]
    fn integers() {
        for i in [0i64, 1, -1, 63, 64, -65, 1001, i32::MIN.into(), i32::MAX.into(), i64::MIN, i64::MAX] {
            let mut b = Vec::new();
            put_int(&mut b, i);
            assert_eq!(Reader { s: &b }.int().unwrap(), i);
        }
        // Non-minimal encodings are accepted, as by Go; 9-byte counts are not.
        assert_eq!(Reader { s: &[0xfe, 0x00, 0x05] }.uint().unwrap(), 5);
        assert!(Reader { s: &[0xf7, 0, 0, 0, 0, 0, 0, 0, 0, 1] }.uint().is_err());
        assert!(Reader { s: &[0xfe, 0x01] }.uint().is_err());
    }

    #[test]
    fn refuses_what_go_does_not_write() {
        let good = hex(GO_REQ);
        // Trailing bytes, truncation at every length, a flipped byte anywhere: never a panic.
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(decode_req(&trailing).is_err());
        for n in 0..good.len() {
            assert!(decode_req(&good[..n]).is_err(), "truncated at {n}");
        }
        for i in 0..good.len() {
            for bit in 0..8 {
                let mut b = good.clone();
                b[i] ^= 1 << bit;
                let _ = decode_req(&b);
            }
        }
        // A Resp stream is not a Req (unknown fields), and vice versa.
        let resp = encode_resp(&Resp { req_identifier: 1, ..Resp::default() });
        assert!(decode_req(&resp).is_err());
        assert!(decode_resp(&good).is_err());
        // Out of int32 range.
        let mut big = encode("Resp", &RESP_FIELDS, &[Val::Int(1 << 40)]);
        assert!(decode_resp(&big).is_err());
        big = encode("Resp", &RESP_FIELDS, &[Val::Int(-(1 << 31))]);
        assert_eq!(decode_resp(&big).unwrap().req_identifier, i32::MIN);
    }

    #[test]
    fn accepts_other_ids_names_and_field_orders() {
        // The SDK's GeneralWsResp order, another type id (70) and struct name.
        let order = [
            ("ReqIdentifier", Kind::Int),
            ("ErrCode", Kind::Int),
            ("ErrMsg", Kind::Str),
            ("MsgIncr", Kind::Str),
            ("OperationID", Kind::Str),
            ("Data", Kind::Bytes),
        ];
        let vals =
            [Val::Int(1003), Val::Int(1302), Val::Str("BlockedByPeer"), Val::Str("m1"), Val::Str(""), Val::Bytes(&[])];
        let frame = encode("GeneralWsResp", &order, &vals);
        // Rewrite id 65 → 70 (both one-byte ints: -65 = 0x81, 65 = 0x82 after the 0xff count).
        let frame: Vec<u8> = frame.windows(2).enumerate().fold(frame.clone(), |mut f, (i, w)| {
            if w == [0xff, 0x81] {
                f[i + 1] = 0x8b;
            } else if w == [0xff, 0x82] {
                f[i + 1] = 0x8c;
            }
            f
        });
        let r = decode_resp(&frame).unwrap();
        assert_eq!(
            (r.req_identifier, r.err_code, r.err_msg.as_str(), r.msg_incr.as_str()),
            (1003, 1302, "BlockedByPeer", "m1")
        );
    }
}
