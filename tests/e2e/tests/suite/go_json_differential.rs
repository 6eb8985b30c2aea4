//! Differential test of the compat surface's JSON reading against Go's `encoding/json` itself,
//! the decoder OpenIM uses (contract §1.4, §10.8c; issue 10 item 2).
//!
//! For every allow-listed route, Go struct types are generated from imgate's request schema and
//! compiled with the machine's `go` (Debian's `golang-go`, installed by `make test`). Thousands of
//! bodies are generated per run — keys in other letter cases, with `ſ`/`K` folding characters,
//! `\u` escapes, duplicates that fold to one field, unknown keys, nulls, wrong types, nesting —
//! and each is decoded three times by Go: as sent, as imgate's canonical re-encoding, and as
//! forwarded after identity binding. The properties: when imgate accepts a body, Go reads the
//! canonical form exactly as it reads the original (nothing lost, nothing changed), Go accepts
//! it too, and every identity field Go decodes from what imgate forwards is the caller — and the
//! original said the caller or nothing. Where imgate is unsure, it refuses; refusals are fine.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use host::routes::compat::gojson::{decode, Ty, F};
use host::routes::compat::{bind_identity, schema, Rule, ALLOWED};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

const CALLER: &str = "alice";
const BODIES_PER_ROUTE: usize = 60;

fn go_binary() -> PathBuf {
    for p in ["go", "/usr/lib/go/bin/go", "/usr/local/go/bin/go"] {
        if Command::new(p).arg("version").output().is_ok_and(|o| o.status.success()) {
            return PathBuf::from(p);
        }
    }
    panic!("no Go toolchain: `make test` installs Debian's golang-go (apt-get install golang-go)");
}

/// Go source: one struct type per schema object, and a main that decodes `index\tjson` lines.
fn go_source(routes: &[(&str, &'static [F])]) -> String {
    let mut types = String::new();
    let mut n = 0;
    let mut cases = String::new();
    for (i, (_, schema)) in routes.iter().enumerate() {
        let t = go_struct(schema, &mut types, &mut n);
        let _ =
            writeln!(cases, "\tcase {i}:\n\t\tv := new({t})\n\t\terr = json.Unmarshal([]byte(body), v)\n\t\tout = v");
    }
    format!(
        r#"package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
)

{types}
func main() {{
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<24)
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	for in.Scan() {{
		line := in.Text()
		tab := strings.IndexByte(line, '\t')
		idx, _ := strconv.Atoi(line[:tab])
		body := line[tab+1:]
		var out interface{{}}
		var err error
		switch idx {{
{cases}		}}
		if err != nil {{
			fmt.Fprintln(w, "ERR")
			continue
		}}
		b, _ := json.Marshal(out)
		fmt.Fprintf(w, "OK %s\n", b)
	}}
}}
"#
    )
}

fn go_struct(fields: &'static [F], types: &mut String, n: &mut usize) -> String {
    let mut body = String::new();
    for (i, F(name, ty)) in fields.iter().enumerate() {
        let t = go_type(*ty, types, n);
        let _ = writeln!(body, "\tF{i} {t} `json:\"{name}\"`");
    }
    *n += 1;
    let name = format!("T{n}");
    let _ = writeln!(types, "type {name} struct {{\n{body}}}\n");
    name
}

fn go_type(ty: Ty, types: &mut String, n: &mut usize) -> String {
    match ty {
        Ty::Str => "*string".into(),
        Ty::I32 => "*int32".into(),
        Ty::I64 => "*int64".into(),
        Ty::U32 => "*uint32".into(),
        Ty::U64 => "*uint64".into(),
        Ty::Bool => "*bool".into(),
        Ty::Strs => "[]string".into(),
        Ty::I32s => "[]int32".into(),
        Ty::I64s => "[]int64".into(),
        Ty::Obj(f) => format!("*{}", go_struct(f, types, n)),
        Ty::Objs(f) => format!("[]*{}", go_struct(f, types, n)),
        Ty::MapStr => "map[string]string".into(),
        Ty::MapBool => "map[string]bool".into(),
    }
}

/// A generated body, as JSON text (so it can hold duplicate keys and escapes).
struct Gen {
    rng: StdRng,
}

impl Gen {
    fn key(&mut self, name: &str) -> String {
        let variant = self.rng.gen_range(0..10);
        let mut k = String::new();
        for c in name.chars() {
            let folded = match (variant, c) {
                (0..=3, c) => c,
                (4 | 5, c) if self.rng.gen_bool(0.5) => {
                    if c.is_ascii_lowercase() {
                        c.to_ascii_uppercase()
                    } else {
                        c.to_ascii_lowercase()
                    }
                }
                (6 | 7, 's' | 'S') => '\u{017F}',
                (6 | 7, 'k' | 'K') => '\u{212A}',
                (8, 'i' | 'I') => '\u{0130}', // not in i's simple fold orbit: an unknown key to Go
                (9, c) if self.rng.gen_bool(0.3) => {
                    let _ = write!(k, "\\u{:04x}", c as u32);
                    continue;
                }
                (_, c) => c,
            };
            match folded {
                '"' => k.push_str("\\\""),
                '\\' => k.push_str("\\\\"),
                c => k.push(c),
            }
        }
        k
    }

    fn string(&mut self) -> String {
        let opts = [CALLER, "bob", "", "si_alice_bob", "\\u017f", "a\\\"b", "\u{e9}t\u{e9}", "alice "];
        format!("\"{}\"", opts[self.rng.gen_range(0..opts.len())])
    }

    fn scalar(&mut self, ty: Ty) -> String {
        match ty {
            Ty::Str => self.string(),
            Ty::Bool => ["true", "false"][self.rng.gen_range(0..2)].into(),
            Ty::I32 | Ty::I64 | Ty::U32 | Ty::U64 => {
                let opts = [
                    "0",
                    "1",
                    "-1",
                    "7",
                    "2147483647",
                    "2147483648",
                    "-2147483649",
                    "4294967296",
                    "1.5",
                    "1e2",
                    "-0",
                    "9223372036854775808",
                    "18446744073709551615",
                    "18446744073709551616",
                ];
                opts[self.rng.gen_range(0..opts.len())].into()
            }
            _ => self.value(ty, 0),
        }
    }

    fn wrong(&mut self) -> String {
        ["1", "\"x\"", "true", "[]", "{}", "[1]", "{\"a\":1}"][self.rng.gen_range(0..7)].into()
    }

    fn list(&mut self, item: impl Fn(&mut Self) -> String) -> String {
        let n = self.rng.gen_range(0..4);
        let items: Vec<String> =
            (0..n).map(|_| if self.rng.gen_bool(0.05) { "null".into() } else { item(self) }).collect();
        format!("[{}]", items.join(","))
    }

    fn value(&mut self, ty: Ty, depth: usize) -> String {
        if self.rng.gen_bool(0.05) {
            return "null".into();
        }
        if self.rng.gen_bool(0.04) {
            return self.wrong();
        }
        match ty {
            Ty::Str | Ty::Bool | Ty::I32 | Ty::I64 | Ty::U32 | Ty::U64 => self.scalar(ty),
            Ty::Strs => self.list(|g| g.string()),
            Ty::I32s => self.list(|g| g.scalar(Ty::I32)),
            Ty::I64s => self.list(|g| g.scalar(Ty::I64)),
            Ty::Obj(f) => self.object(f, depth + 1),
            Ty::Objs(f) => self.list(|g| g.object(f, depth + 1)),
            Ty::MapStr => format!("{{\"{}\":{}}}", self.key("k"), self.string()),
            Ty::MapBool => format!("{{\"{}\":{}}}", self.key("k"), self.scalar(Ty::Bool)),
        }
    }

    fn object(&mut self, fields: &'static [F], depth: usize) -> String {
        let mut parts = Vec::new();
        for F(name, ty) in fields {
            if depth > 3 || self.rng.gen_bool(0.3) {
                continue;
            }
            let (k, v) = (self.key(name), self.value(*ty, depth));
            parts.push(format!("\"{k}\":{v}"));
            if self.rng.gen_bool(0.08) {
                // A second key for the same field: OpenIM would take the last.
                let (k, v) = (self.key(name), self.value(*ty, depth));
                parts.push(format!("\"{k}\":{v}"));
            }
        }
        if self.rng.gen_bool(0.15) {
            let unknown = ["x", "userIDx", "user_ID", "platformID", "sendTime", "__proto__"];
            parts.push(format!("\"{}\":{}", unknown[self.rng.gen_range(0..unknown.len())], self.wrong()));
        }
        // Go decodes keys in document order: shuffle so duplicates come in either order.
        for i in (1..parts.len()).rev() {
            let j = self.rng.gen_range(0..=i);
            parts.swap(i, j);
        }
        format!("{{{}}}", parts.join(","))
    }
}

/// The value Go decoded at a dotted path (Go marshals with the schema's names).
fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, seg| v.get(seg).unwrap_or(&Value::Null))
}

#[test]
fn imgate_binds_what_go_decodes_or_refuses() {
    let routes: Vec<(&str, &'static [F])> = ALLOWED
        .iter()
        .map(|(p, _)| (*p, schema::request_schema(p).unwrap_or_else(|| panic!("{p} has no schema"))))
        .collect();
    let dir = std::env::temp_dir().join(format!("imgate-gojson-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("main.go"), go_source(&routes)).expect("write go");
    let go = go_binary();
    let built = Command::new(&go)
        .args(["build", "-o", "oracle", "main.go"])
        .current_dir(&dir)
        .env("GOCACHE", dir.join("cache"))
        .env("GOPATH", dir.join("gopath"))
        .env("GO111MODULE", "off")
        .output()
        .expect("go build runs");
    assert!(built.status.success(), "go build: {}", String::from_utf8_lossy(&built.stderr));

    let seed: u64 = std::env::var("GOJSON_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("GOJSON_SEED={seed}");
    let mut gen = Gen { rng: StdRng::seed_from_u64(seed) };
    // (route index, original, canonical, forwarded) per accepted body; originals alone otherwise.
    let mut cases = Vec::new();
    for (i, (_, schema)) in routes.iter().enumerate() {
        for _ in 0..BODIES_PER_ROUTE {
            let body = gen.object(schema, 0);
            let canonical = decode(schema, body.as_bytes()).ok();
            let forwarded = canonical.clone().and_then(|mut c| {
                bind_identity(ALLOWED[i].1, CALLER, &mut c).ok().map(|()| Value::Object(c).to_string())
            });
            cases.push((i, body, canonical.map(|c| Value::Object(c).to_string()), forwarded));
        }
    }
    let mut input = String::new();
    for (i, body, canonical, forwarded) in &cases {
        for b in [Some(body), canonical.as_ref(), forwarded.as_ref()].into_iter().flatten() {
            let _ = writeln!(input, "{i}\t{b}");
        }
    }
    let mut child =
        Command::new(dir.join("oracle")).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("oracle runs");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut next = || -> Option<Value> {
        let line = lines.next().expect("an answer per body").expect("utf-8");
        line.strip_prefix("OK ").map(|j| serde_json::from_str(j).expect("go output is JSON"))
    };
    let (mut accepted, mut bound, mut folded_accepted) = (0, 0, 0);
    for (i, body, canonical, forwarded) in &cases {
        let (path, rules) = ALLOWED[*i];
        let go_original = next();
        let Some(canonical) = canonical else { continue };
        accepted += 1;
        if body.contains('\u{017F}') || body.contains('\u{212A}') || body.contains("\\u") {
            folded_accepted += 1;
        }
        let go_canonical = next();
        assert!(go_original.is_some(), "{path}: imgate accepted what Go refuses: {body}");
        assert_eq!(
            go_original, go_canonical,
            "{path}: Go reads the canonical form differently\nbody: {body}\ncanonical: {canonical}"
        );
        let Some(forwarded) = forwarded else { continue };
        bound += 1;
        let go_forwarded = next().unwrap_or_else(|| panic!("{path}: Go refuses the forwarded body {forwarded}"));
        for rule in rules.iter() {
            if let Rule::Caller(p) = rule {
                assert_eq!(at(&go_forwarded, p), CALLER, "{path}: `{p}` forwarded as another user\nbody: {body}");
                let original = at(go_original.as_ref().expect("checked"), p);
                assert!(
                    original.is_null() || original == CALLER || original == "",
                    "{path}: OpenIM would read `{p}` = {original} from {body}, imgate bound it to the caller"
                );
            }
        }
    }
    child.wait().expect("oracle exits");
    writer.join().expect("writer").expect("write");
    let total = cases.len();
    eprintln!(
        "{total} bodies: {accepted} accepted ({folded_accepted} with folding or escapes), {bound} bound and forwarded"
    );
    assert!(total >= 3000, "at least a few thousand bodies per run");
    assert!(accepted * 4 >= total, "the generator must exercise accepted bodies, not only refusals");
    assert!(folded_accepted >= 200, "folding keys must be exercised: {folded_accepted}");
    let _ = std::fs::remove_dir_all(&dir);
}
