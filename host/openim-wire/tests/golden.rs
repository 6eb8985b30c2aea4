//! Golden tests against Go itself: `tests/golden/gobjson.go` (standard library only) is built
//! with the installed `go` and driven line by line. For each envelope value we check that our
//! encodings equal Go's byte for byte (gob, JSON), that we decode Go's frames (plain, gzip, and
//! the Go SDK's differently ordered twin structs with other type ids) to the value, and that Go
//! decodes our frames to the value. Then a differential corpus: tricky JSON inputs and every
//! single-bit corruption of Go's gob frames go to both decoders; whatever we accept, Go must
//! accept with the same value (where Go accepts and we refuse, it must be by design: ambiguous
//! keys, or gob streams Go never writes).
//!
//! The Go program runs once per struct (`req`, `resp`): gob gives the first type a process
//! encodes id 65, which is what our encoder writes.

// Test code: a panic is how a test fails (clippy only sees `#[test]` functions as tests).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::OnceLock;

use openim_wire::{Codec, Encoding, Req, Resp, WireError};

const GOB: Codec = Codec { encoding: Encoding::Gob, gzip: false };
const JSON: Codec = Codec { encoding: Encoding::Json, gzip: false };
const GZ_GOB: Codec = Codec { encoding: Encoding::Gob, gzip: true };
const GZ_JSON: Codec = Codec { encoding: Encoding::Json, gzip: true };

/// Build the Go program once per test binary, hermetically (own caches, no network).
fn go_binary() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("openim-wire-golden");
        std::fs::create_dir_all(&tmp).unwrap();
        let bin = tmp.join("gobjson");
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/gobjson.go");
        let out = Command::new("go")
            .arg("build")
            .arg("-o")
            .arg(&bin)
            .arg(&src)
            .env("GOCACHE", tmp.join("gocache"))
            .env("GOPATH", tmp.join("gopath"))
            .env("GOPROXY", "off")
            .env("GOFLAGS", "")
            .output()
            .expect("`go` must be installed (Debian golang-go) for the golden tests");
        assert!(out.status.success(), "go build failed: {}", String::from_utf8_lossy(&out.stderr));
        bin
    })
}

/// One running Go program.
struct Go {
    /// Positions of the integer fields in an `ok` answer.
    ints: &'static [usize],
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Go {
    fn start(mode: &str) -> Go {
        let mut child = Command::new(go_binary())
            .arg(mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run gobjson");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let ints: &'static [usize] = if mode == "req" { &[0] } else { &[0, 3] };
        Go { ints, child, stdin, stdout }
    }

    fn ask(&mut self, line: &str) -> Vec<String> {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
        let mut answer = String::new();
        self.stdout.read_line(&mut answer).unwrap();
        assert!(!answer.is_empty(), "gobjson died on: {}", &line[..line.len().min(200)]);
        answer.split_whitespace().map(str::to_string).collect()
    }

    /// Go's decoding of a frame: `Some(fields as bytes)` or `None` for an error.
    fn decode(&mut self, enc: &str, gz: bool, frame: &[u8]) -> Option<Vec<Vec<u8>>> {
        let a = self.ask(&format!("dec {enc} {} {}", if gz { "gz" } else { "raw" }, hex_of(frame)));
        (a[0] == "ok").then(|| {
            a[1..]
                .iter()
                .enumerate()
                .map(|(i, t)| match t.as_str() {
                    _ if self.ints.contains(&i) => t.as_bytes().to_vec(),
                    "-" | "nil" | "empty" => Vec::new(),
                    t => unhex(t),
                })
                .collect()
        })
    }
}

impl Drop for Go {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hex_of(b: &[u8]) -> String {
    if b.is_empty() {
        "-".into()
    } else {
        hex::encode(b)
    }
}

fn unhex(t: &str) -> Vec<u8> {
    hex::decode(t).unwrap()
}

/// The JSON `data` token Go must be given so that its output is the one we claim to match:
/// a zero `Req` has nil data; see the json module docs for `Resp`.
fn data_token(data: &[u8], nil: bool) -> String {
    match (data.is_empty(), nil) {
        (true, true) => "nil".into(),
        (true, false) => "empty".into(),
        (false, _) => hex::encode(data),
    }
}

fn req_line(r: &Req) -> String {
    format!(
        "{} {} {} {} {} {}",
        r.req_identifier,
        hex_of(r.token.as_bytes()),
        hex_of(r.send_id.as_bytes()),
        hex_of(r.operation_id.as_bytes()),
        hex_of(r.msg_incr.as_bytes()),
        data_token(&r.data, true)
    )
}

fn resp_line(r: &Resp) -> String {
    let nil = r.err_code != 0 || r.req_identifier == 2002 || r.req_identifier == 2004;
    format!(
        "{} {} {} {} {} {}",
        r.req_identifier,
        hex_of(r.msg_incr.as_bytes()),
        hex_of(r.operation_id.as_bytes()),
        r.err_code,
        hex_of(r.err_msg.as_bytes()),
        data_token(&r.data, nil)
    )
}

/// Ints as decimal text, strings and data as bytes: the shape `Go::decode` returns.
fn req_fields(r: &Req) -> Vec<Vec<u8>> {
    vec![
        r.req_identifier.to_string().into_bytes(),
        r.token.clone().into_bytes(),
        r.send_id.clone().into_bytes(),
        r.operation_id.clone().into_bytes(),
        r.msg_incr.clone().into_bytes(),
        r.data.clone(),
    ]
}

fn resp_fields(r: &Resp) -> Vec<Vec<u8>> {
    vec![
        r.req_identifier.to_string().into_bytes(),
        r.msg_incr.clone().into_bytes(),
        r.operation_id.clone().into_bytes(),
        r.err_code.to_string().into_bytes(),
        r.err_msg.clone().into_bytes(),
        r.data.clone(),
    ]
}

/// Deterministic pseudo-random bytes (xorshift).
fn noise(n: usize, mut seed: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

/// Strings Go 1.19 (the toolchain here) and Go 1.22 (OpenIM's) both write the same way: no
/// `\b` or `\f`, whose escapes changed in 1.22 (covered by a unit test).
const TEXTS: [&str; 6] =
    ["用户😀", "ſendK", "<a href=\"x\">&amp;</a>", "\u{1}\n\r\t\"\\/\u{1f}\u{7f}", "\u{2028}\u{2029}é", " "];

fn reqs() -> Vec<Req> {
    let mut v = vec![
        Req::default(),
        Req { req_identifier: 1001, send_id: "u1".into(), data: vec![10, 2, 117, 49], ..Req::default() },
        Req { req_identifier: -1, ..Req::default() },
        Req { req_identifier: i32::MIN, token: "t".into(), ..Req::default() },
        Req { req_identifier: i32::MAX, msg_incr: "u1_123".into(), ..Req::default() },
        Req {
            req_identifier: 1003,
            token: "eyJhbGciOiJIUzI1NiJ9.e30.x".into(),
            send_id: "u1".into(),
            operation_id: "op-1".into(),
            msg_incr: "u1_9".into(),
            // The largest JSON request under the frame limit (base64 grows it by 4/3).
            data: noise(38_000, 7),
        },
        Req { data: vec![0], ..Req::default() },
    ];
    for (i, t) in TEXTS.iter().enumerate() {
        v.push(Req {
            req_identifier: 2000 + i as i32,
            token: t.to_string(),
            send_id: t.to_string(),
            operation_id: t.to_string(),
            msg_incr: t.to_string(),
            data: t.as_bytes().to_vec(),
        });
    }
    v
}

fn resps() -> Vec<Resp> {
    let mut v = vec![
        Resp::default(),
        Resp { req_identifier: 1001, msg_incr: "u1_1".into(), operation_id: "op".into(), ..Resp::default() },
        Resp {
            req_identifier: 1003,
            msg_incr: "u1_2".into(),
            operation_id: "op".into(),
            err_code: 1302,
            err_msg: "BlockedByPeer".into(),
            data: Vec::new(),
        },
        Resp { req_identifier: 2002, ..Resp::default() },
        Resp { req_identifier: 2004, msg_incr: "m".into(), ..Resp::default() },
        Resp { req_identifier: 2001, operation_id: "op-push".into(), data: noise(50_000, 3), ..Resp::default() },
        Resp { req_identifier: -7, err_code: -1, err_msg: "x".into(), ..Resp::default() },
        Resp { req_identifier: i32::MIN, err_code: i32::MAX, ..Resp::default() },
        Resp { req_identifier: 1, err_code: i32::MIN, data: vec![1], ..Resp::default() },
    ];
    for (i, t) in TEXTS.iter().enumerate() {
        v.push(Resp {
            req_identifier: 1000 + i as i32,
            msg_incr: t.to_string(),
            operation_id: t.to_string(),
            err_code: 0,
            err_msg: t.to_string(),
            data: t.as_bytes().to_vec(),
        });
    }
    v
}

/// Both directions for one value: Go's frames → us, our frames → Go, encodings equal.
fn check_value<T: PartialEq + std::fmt::Debug>(
    go: &mut Go,
    line: &str,
    value: &T,
    fields: Vec<Vec<u8>>,
    encode: impl Fn(&Codec, &T) -> Vec<u8>,
    decode: impl Fn(&Codec, &[u8]) -> Result<T, WireError>,
) {
    let a = go.ask(&format!("enc {line}"));
    let (g, j, gzg, gzj) = (unhex(&a[0]), unhex(&a[1]), unhex(&a[2]), unhex(&a[3]));
    assert_eq!(hex::encode(encode(&GOB, value)), a[0], "gob bytes of {line}");
    assert_eq!(
        String::from_utf8(encode(&JSON, value)).unwrap(),
        String::from_utf8(j.clone()).unwrap(),
        "json of {line}"
    );
    assert_eq!(&decode(&GOB, &g).unwrap(), value, "our decode of Go's gob {line}");
    assert_eq!(&decode(&JSON, &j).unwrap(), value, "our decode of Go's json {line}");
    assert_eq!(&decode(&GZ_GOB, &gzg).unwrap(), value, "our decode of Go's gzip gob {line}");
    assert_eq!(&decode(&GZ_JSON, &gzj).unwrap(), value, "our decode of Go's gzip json {line}");
    let sdk = unhex(&go.ask(&format!("encsdk {line}"))[0]);
    assert_eq!(&decode(&GOB, &sdk).unwrap(), value, "our decode of the SDK twin {line}");
    for (enc, codec) in [("gob", GOB), ("json", JSON), ("gob", GZ_GOB), ("json", GZ_JSON)] {
        let ours = encode(&codec, value);
        assert_eq!(go.decode(enc, codec.gzip, &ours), Some(fields.clone()), "Go's decode of our {enc} {line}");
    }
}

#[test]
fn req_frames_match_go() {
    let mut go = Go::start("req");
    for r in reqs() {
        check_value(&mut go, &req_line(&r), &r, req_fields(&r), Codec::encode_req, Codec::decode_req);
    }
}

#[test]
fn resp_frames_match_go() {
    let mut go = Go::start("resp");
    for r in resps() {
        check_value(&mut go, &resp_line(&r), &r, resp_fields(&r), Codec::encode_resp, Codec::decode_resp);
    }
}

/// JSON inputs where Go's rules are easy to get wrong.
const JSON_CORPUS: &[&str] = &[
    r#"{"reqIdentifier":1001,"sendID":"u1","data":"CgJ1MQ=="}"#,
    r#"{"REQIDENTIFIER":1001,"SendId":"u1","Data":"CgJ1MQ=="}"#,
    "{\"\u{17f}endID\":\"u1\",\"to\u{212a}en\":\"t\"}",
    "{\"\\u017fendID\":\"u1\",\"\\u212aoken\":\"t\"}",
    "{\"sendıD\":\"u1\",\"ｓendID\":\"u2\"}",
    r#"{"sendID":"u1","sendID":"u2"}"#,
    r#"{"sendID":"u1","SENDID":"u2"}"#,
    r#"{"data":null,"data":"AA=="}"#,
    r#"null"#,
    r#" { } "#,
    r#"{"reqIdentifier":null,"token":null,"data":null}"#,
    r#"{"reqIdentifier":-0}"#,
    r#"{"reqIdentifier":2147483647}"#,
    r#"{"reqIdentifier":2147483648}"#,
    r#"{"reqIdentifier":-2147483649}"#,
    r#"{"reqIdentifier":1.0}"#,
    r#"{"reqIdentifier":1e3}"#,
    r#"{"reqIdentifier":"1"}"#,
    r#"{"reqIdentifier":true}"#,
    r#"{"sendID":1}"#,
    r#"{"sendID":{}}"#,
    r#"{"sendID":"\ud83d\ude00"}"#,
    r#"{"sendID":"\ud800"}"#,
    r#"{"sendID":"\udc00\ud800x"}"#,
    r#"{"sendID":"\ud800\u0041"}"#,
    r#"{"sendID":"\b\f\/\u0000"}"#,
    r#"{"data":"AQ\nID\r\n"}"#,
    r#"{"data":"AB=="}"#,
    r#"{"data":"AQ"}"#,
    r#"{"data":"AQ=="}"#,
    r#"{"data":"AQ==AQ=="}"#,
    r#"{"data":"A==="}"#,
    r#"{"data":"===="}"#,
    r#"{"data":"_-8="}"#,
    r#"{"data":""}"#,
    r#"{"data":[]}"#,
    r#"{"data":[1,2,255]}"#,
    r#"{"data":[1,null,3]}"#,
    r#"{"data":[256]}"#,
    r#"{"data":[-1]}"#,
    r#"{"data":[1.0]}"#,
    r#"{"data":["a"]}"#,
    r#"{"data":{}}"#,
    r#"{"data":1}"#,
    r#"{"x":[1,{"y":[true,false,null,"s",-1.5E+3]}],"sendID":"u"}"#,
    r#"{"x":01}"#,
    r#"{"x":-}"#,
    r#"{"x":1.}"#,
    r#"{"x":.5}"#,
    r#"{"x":[1,]}"#,
    r#"{"x":{"a" 1}}"#,
    r#"{"x":tru}"#,
    r#"{"sendID":"u",}"#,
    r#"{"sendID":"u"} {}"#,
    r#"{"sendID":"u"}x"#,
    r#"[]"#,
    r#""s""#,
    r#"1"#,
    r#""#,
    r#"{"#,
    "{\"sendID\":\"tab\there\"}",
    "\u{feff}{}",
];

#[test]
fn json_decoding_agrees_with_go() {
    let mut go = Go::start("req");
    let mut inputs: Vec<Vec<u8>> = JSON_CORPUS.iter().map(|s| s.as_bytes().to_vec()).collect();
    inputs.push(b"{\"sendID\":\"a\xe4\xb8b\xff\xed\xa0\x80\"}".to_vec());
    inputs.push(b"{\"s\xc5\xbfndID\":\"u\"}".to_vec());
    let depth = 10_000;
    inputs.push(format!("{{\"x\":{}{}}}", "[".repeat(depth - 1), "]".repeat(depth - 1)).into_bytes());
    inputs.push(format!("{{\"x\":{}{}}}", "[".repeat(depth), "]".repeat(depth)).into_bytes());
    for input in &inputs {
        let theirs = go.decode("json", false, input);
        let ours = JSON.decode_req(input);
        let shown = String::from_utf8_lossy(&input[..input.len().min(80)]).to_string();
        match (&ours, &theirs) {
            (Ok(r), Some(g)) => assert_eq!(&req_fields(r), g, "{shown}"),
            (Err(_), None) => {}
            (Err(WireError::Json(m)), Some(_)) if m.contains("ambiguous") => {}
            _ => panic!("{shown}: ours {ours:?}, Go {theirs:?}"),
        }
    }
}

/// Every single-bit flip and every truncation of Go's own gob frames: nothing we accept may be
/// read differently (or refused) by Go.
#[test]
fn gob_corruptions_never_decode_differently_from_go() {
    for mode in ["req", "resp"] {
        let mut go = Go::start(mode);
        let lines: Vec<String> = if mode == "req" {
            reqs().iter().filter(|r| r.data.len() < 100).map(req_line).collect()
        } else {
            resps().iter().filter(|r| r.data.len() < 100).map(resp_line).collect()
        };
        let mut frames = Vec::new();
        for line in lines.iter().take(4) {
            frames.push(unhex(&go.ask(&format!("enc {line}"))[0]));
            frames.push(unhex(&go.ask(&format!("encsdk {line}"))[0]));
        }
        let (mut agreed, mut stricter) = (0, 0);
        for frame in &frames {
            let mut variants: Vec<Vec<u8>> = (0..frame.len()).map(|n| frame[..n].to_vec()).collect();
            for i in 0..frame.len() {
                for bit in 0..8 {
                    let mut f = frame.clone();
                    f[i] ^= 1 << bit;
                    variants.push(f);
                }
            }
            for f in variants {
                let ours = if mode == "req" {
                    GOB.decode_req(&f).map(|r| req_fields(&r))
                } else {
                    GOB.decode_resp(&f).map(|r| resp_fields(&r))
                };
                let theirs = go.decode("gob", false, &f);
                match (ours, theirs) {
                    (Ok(o), Some(g)) => {
                        assert_eq!(o, g, "{}", hex::encode(&f));
                        agreed += 1;
                    }
                    (Ok(o), None) => panic!("we accept {} as {o:?}, Go refuses", hex::encode(&f)),
                    (Err(_), Some(_)) => stricter += 1,
                    (Err(_), None) => agreed += 1,
                }
            }
        }
        eprintln!("{mode}: {agreed} agreed, {stricter} refused by us only (streams Go never writes)");
    }
}
