//! `imgate plugin ...`: the operator's levers on a running gateway's plugins from a shell, and the
//! plugin author's kit.
//!
//! `ls`, `status`, `push`, `activate` and `rollback` are a thin client of the admin API
//! (`routes::plugin_admin`): they hold no plugin logic of their own, so what the command line can do
//! is exactly what the API allows, under the same scopes (`imgate:admin` to read, `plugins:write` to
//! change) and with the same audit records. Answers are rendered as stable, human-readable text; a
//! refusal comes back as the gateway's status, code, message and request id, so it can be found in
//! the gateway's logs.
//!
//! `new` and `test` need no gateway: they are the author's kit (`plugin_kit`): a scaffold that
//! builds and tests, and a component's hooks run against a recorded request by the gateway's runtime.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};

use crate::error::ErrorBody as ApiError;
use crate::plugins::api::{ActivateRequest, Changed, Manifest, PluginList as List, PluginStatus as Status, Uploaded};

/// Where the gateway is and who is asking; every `imgate plugin` command takes these.
#[derive(Debug, Clone, clap::Args)]
pub struct Gateway {
    /// The gateway's base URL.
    #[arg(long = "gateway", env = "IMGATE_GATEWAY", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// An admin JWT: scope `imgate:admin` to read, `plugins:write` to change.
    #[arg(long, env = "IMGATE_ADMIN_TOKEN", hide_env_values = true)]
    pub token: String,
}

/// `imgate plugin <command>`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum PluginCmd {
    /// One line per configured plugin: active version, hash, source, versions, quarantine, last error.
    Ls {
        #[command(flatten)]
        gateway: Gateway,
    },
    /// Everything the gateway knows of one plugin: stored versions, history, quarantine.
    Status {
        /// The plugin's `[[plugin]]` name.
        name: String,
        #[command(flatten)]
        gateway: Gateway,
    },
    /// Upload a component; it is validated and stored, and activated only with `--activate`.
    Push {
        /// The plugin's `[[plugin]]` name.
        name: String,
        /// The component (`.wasm`).
        file: PathBuf,
        /// A version label (default: the hash's first 12 hex digits).
        #[arg(long)]
        version: Option<String>,
        /// Activate it at once (default: only store it).
        #[arg(long)]
        activate: bool,
        #[command(flatten)]
        gateway: Gateway,
    },
    /// Make a stored version active, named by its hash or a unique prefix of it.
    Activate {
        /// The plugin's `[[plugin]]` name.
        name: String,
        /// Its SHA-256 (hex), or a unique prefix such as the 12 digits `ls` shows.
        hash: String,
        #[command(flatten)]
        gateway: Gateway,
    },
    /// Go back to the most recent earlier version that is not quarantined.
    Rollback {
        /// The plugin's `[[plugin]]` name.
        name: String,
        #[command(flatten)]
        gateway: Gateway,
    },
    /// Scaffold a plugin in Rust, JavaScript or Python that builds and passes its own test.
    ///
    /// The policy as plain functions with unit tests, the glue to the contract, a build script, a
    /// README, recorded requests and a route config for `imgate plugin test`. No gateway needed.
    New {
        /// The plugin's `[[plugin]]` name: 1-64 of a-z 0-9 - _.
        name: String,
        /// The language.
        #[arg(long, value_enum)]
        lang: crate::plugin_kit::Lang,
        /// Where to write it (default: ./NAME); must not exist or be empty.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Rust: the folder of imgate's SDK crate, plugin-sdk/ (default: the one of the source tree
        /// this imgate was built from).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Run a component's hooks against a recorded request (and response), without a gateway.
    ///
    /// Loads it with the given grants (none by default), runs init with the config, on-request, then
    /// on-response, in imgate's own runtime and limits. Prints the verdicts and what they changed;
    /// exits 0 when every hook ran, whatever it answered, 1 when loading, init or a hook failed.
    Test {
        /// The component (`.wasm`).
        component: PathBuf,
        /// The recorded request (JSON: method, route, path, query, headers, body, principal).
        #[arg(long)]
        request: PathBuf,
        /// The route's recorded response (JSON: status, headers, body), shown to on-response.
        #[arg(long)]
        response: Option<PathBuf>,
        /// The route's configuration of the plugin (JSON; default {}).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Capabilities granted, comma-separated: log, clock, config, kv, openim, random, wasi-stubs
        /// (default: none, as in [[plugin]] capabilities).
        #[arg(long, value_delimiter = ',', value_parser = crate::plugin_kit::parse_capability)]
        capabilities: Vec<crate::plugins::config::Capability>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Keep compiled code in this folder between runs: a 12-18 MB JS or Python component then
        /// loads in a fraction of a second instead of compiling for seconds.
        #[arg(long)]
        cache_dir: Option<PathBuf>,
    },
}

impl PluginCmd {
    /// The gateway the command talks to; `None` for the author's kit, which needs none.
    fn gateway(&self) -> Option<&Gateway> {
        match self {
            PluginCmd::Ls { gateway }
            | PluginCmd::Status { gateway, .. }
            | PluginCmd::Push { gateway, .. }
            | PluginCmd::Activate { gateway, .. }
            | PluginCmd::Rollback { gateway, .. } => Some(gateway),
            PluginCmd::New { .. } | PluginCmd::Test { .. } => None,
        }
    }
}

/// Runs one command; `Ok` is what to print, `Err` what went wrong. `test` prints its report itself
/// (to stdout, whatever the outcome, so `--json` stays parseable) and, when a step failed, returns
/// `Err` with a one-line summary.
pub async fn run(cmd: PluginCmd) -> Result<String, String> {
    let api = match cmd.gateway() {
        Some(gateway) => Api::new(gateway)?,
        None => return run_kit(cmd).await,
    };
    match cmd {
        PluginCmd::Ls { .. } => {
            let list: List = api.call(Method::GET, &[], None, &[]).await?;
            Ok(render_ls(&list.plugins))
        }
        PluginCmd::Status { name, .. } => Ok(render_status(&api.status(&name).await?)),
        PluginCmd::Push { name, file, version, activate, .. } => {
            let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let mut query = vec![("activate", activate.to_string())];
            if let Some(v) = version {
                query.push(("version", v));
            }
            let body = Body::Wasm(bytes);
            let up: Uploaded = api.call(Method::POST, &[&name, "versions"], Some(body), &query).await?;
            let m = &up.manifest;
            Ok(if up.active {
                format!("activated {} version {} ({}, {} bytes)\n", m.name, m.version, m.hash, m.size)
            } else {
                format!(
                    "stored {} version {} ({}, {} bytes); not active\nactivate it with: imgate plugin activate {} {}\n",
                    m.name,
                    m.version,
                    m.hash,
                    m.size,
                    m.name,
                    short(&m.hash)
                )
            })
        }
        PluginCmd::Activate { name, hash, .. } => {
            let hash = api.resolve(&name, &hash).await?;
            let body = Body::Json(serde_json::to_value(ActivateRequest { hash }).map_err(|e| e.to_string())?);
            let done: Changed = api.call(Method::POST, &[&name, "activate"], Some(body), &[]).await?;
            let m = &done.manifest;
            Ok(format!("activated {} version {} ({})\n", m.name, m.version, m.hash))
        }
        PluginCmd::Rollback { name, .. } => {
            let done: Changed = api.call(Method::POST, &[&name, "rollback"], None, &[]).await?;
            let m = &done.manifest;
            Ok(format!("rolled back {} to version {} ({})\n", m.name, m.version, m.hash))
        }
        PluginCmd::New { .. } | PluginCmd::Test { .. } => run_kit(cmd).await,
    }
}

/// `new` and `test`: the author's kit, no gateway.
async fn run_kit(cmd: PluginCmd) -> Result<String, String> {
    use crate::plugin_kit::{new_plugin, test_plugin, NewOptions, TestOptions};
    match cmd {
        PluginCmd::New { name, lang, dir, sdk } => new_plugin(&NewOptions { name, lang, dir, sdk }),
        PluginCmd::Test { component, request, response, config, capabilities, json, cache_dir } => {
            let opts = TestOptions { component, request, response, config, capabilities, json, cache_dir };
            let outcome = test_plugin(opts).await?;
            if outcome.ok {
                Ok(outcome.report)
            } else {
                print!("{}", outcome.report);
                Err(outcome.summary)
            }
        }
        _ => Err("not a command of the author's kit".into()),
    }
}

// ---- The API's answers are `plugins::api`'s types (read leniently: a newer gateway still answers an
// ---- older CLI).

/// `trap 3, exit 5`, or `none`.
fn counts<N: std::fmt::Display>(m: &std::collections::BTreeMap<String, N>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
}

// ---- HTTP

enum Body {
    Json(serde_json::Value),
    Wasm(Vec<u8>),
}

struct Api {
    http: reqwest::Client,
    /// `<gateway>/v1/admin/plugins`
    base: Url,
    token: String,
}

impl Api {
    fn new(gw: &Gateway) -> Result<Api, String> {
        let mut base = Url::parse(&gw.url).map_err(|e| format!("--gateway {}: {e}", gw.url))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(format!("--gateway {}: expected an http:// or https:// URL", gw.url));
        }
        base.set_query(None);
        base.set_fragment(None);
        base.path_segments_mut()
            .map_err(|()| format!("--gateway {}: not a base URL", gw.url))?
            .pop_if_empty()
            .extend(["v1", "admin", "plugins"]);
        if gw.token.trim().is_empty() {
            return Err("no admin token: pass --token or set IMGATE_ADMIN_TOKEN".into());
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // An upload is compiled and its `init` run on every route config before the answer.
            .timeout(Duration::from_secs(300))
            .user_agent(concat!("imgate-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Api { http, base, token: gw.token.trim().to_owned() })
    }

    /// `base/segments...?query`, each segment percent-encoded.
    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<Body>,
        query: &[(&str, String)],
    ) -> Result<T, String> {
        let url = self.url(segments, query);
        let what = format!("{method} {}", url.path());
        let mut req = self.http.request(method, url.clone()).bearer_auth(&self.token);
        req = match body {
            Some(Body::Json(v)) => req.json(&v),
            Some(Body::Wasm(bytes)) => req.header(reqwest::header::CONTENT_TYPE, "application/wasm").body(bytes),
            None => req,
        };
        let res = req.send().await.map_err(|e| format!("cannot reach the gateway at {url}: {}", chain(&e)))?;
        let status = res.status();
        let text = res.text().await.map_err(|e| format!("{what}: reading the answer: {}", chain(&e)))?;
        if !status.is_success() {
            return Err(refusal(&what, status, &text));
        }
        serde_json::from_str(&text).map_err(|e| format!("{what}: unexpected answer ({e}): {}", excerpt(&text)))
    }

    async fn status(&self, name: &str) -> Result<Status, String> {
        self.call(Method::GET, &[name], None, &[]).await
    }

    /// A full hash as given, or the one stored version whose hash starts with `given`.
    async fn resolve(&self, name: &str, given: &str) -> Result<String, String> {
        let given = given.trim().to_ascii_lowercase();
        if given.is_empty() || !given.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("{given:?}: expected a hash (hex digits, as `imgate plugin ls` shows)"));
        }
        if given.len() == 64 {
            return Ok(given);
        }
        let status = self.status(name).await?;
        let matching: Vec<&Manifest> = status.versions.iter().filter(|m| m.hash.starts_with(&given)).collect();
        match matching.as_slice() {
            [one] => Ok(one.hash.clone()),
            [] => Err(format!("{name}: no stored version has a hash starting with {given}")),
            many => Err(format!(
                "{name}: {given} is ambiguous: {}",
                many.iter().map(|m| short(&m.hash)).collect::<Vec<_>>().join(", ")
            )),
        }
    }
}

/// `POST /v1/admin/plugins/echo/versions: 403 forbidden: not allowed (request id ...)`.
fn refusal(what: &str, status: StatusCode, body: &str) -> String {
    match serde_json::from_str::<ApiError>(body) {
        Ok(e) => {
            let mut out = format!("{what}: {} {}", status.as_u16(), e.code);
            if !e.message.is_empty() {
                let _ = write!(out, ": {}", e.message);
            }
            if !e.request_id.is_empty() {
                let _ = write!(out, " (request id {})", e.request_id);
            }
            out
        }
        Err(_) => format!("{what}: {status}: {}", excerpt(body)),
    }
}

/// What lies under a reqwest error: its own message ("error sending request for url ...") only
/// repeats the URL, the causes say what went wrong.
fn chain(e: &dyn std::error::Error) -> String {
    let Some(first) = e.source() else { return e.to_string() };
    let mut out = first.to_string();
    let mut cause = first.source();
    while let Some(c) = cause {
        let _ = write!(out, ": {c}");
        cause = c.source();
    }
    out
}

/// At most 200 characters of a body, on one line.
fn excerpt(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &one_line[..i]),
        None if one_line.is_empty() => "(empty body)".into(),
        None => one_line,
    }
}

// ---- Rendering

/// The first 12 hex digits of a hash, as `ls` shows it.
fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A table: a header, one row per plugin, columns padded to their widest cell.
fn render_ls(plugins: &[Status]) -> String {
    if plugins.is_empty() {
        return "no plugins are configured\n".into();
    }
    let mut rows =
        vec![["NAME", "VERSION", "HASH", "SOURCE", "VERSIONS", "QUARANTINED", "LAST ERROR"].map(String::from)];
    for p in plugins {
        let (version, hash, source) = match &p.active {
            Some(m) => (m.version.clone(), short(&m.hash).to_owned(), m.source.clone()),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let last_error = match &p.last_error {
            Some(e) => format!("{}: {}", short(&e.hash), one_line(&e.error)),
            None => "-".into(),
        };
        rows.push([
            p.name.clone(),
            version,
            hash,
            source,
            p.versions.len().to_string(),
            p.quarantined.len().to_string(),
            last_error,
        ]);
    }
    let mut widths = [0usize; 7];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn render_status(p: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "plugin        {}", p.name);
    let _ = writeln!(out, "path          {}", p.path);
    let caps = if p.capabilities.is_empty() { "-".to_owned() } else { p.capabilities.join(", ") };
    let _ = writeln!(out, "capabilities  {caps}");
    match &p.active {
        Some(m) => {
            let _ = writeln!(
                out,
                "active        version {} ({}), source {}, {} bytes, world {}",
                m.version, m.hash, m.source, m.size, m.world
            );
        }
        None => out.push_str("active        -\n"),
    }
    match p.active.as_ref().and_then(|m| m.config_schema.as_ref()) {
        Some(schema) => {
            let _ = writeln!(out, "config schema {schema}");
        }
        None => out.push_str("config schema -\n"),
    }
    let history = if p.history.is_empty() {
        "-".to_owned()
    } else {
        p.history.iter().map(|h| short(h)).collect::<Vec<_>>().join(" -> ")
    };
    let _ = writeln!(out, "history       {history}");
    let _ = writeln!(out, "versions      {}", p.versions.len());
    let active = p.active.as_ref().map(|m| m.hash.as_str());
    let width = |f: fn(&Manifest) -> String| p.versions.iter().map(|m| f(m).chars().count()).max().unwrap_or(0);
    let (wv, ws, wz) = (width(|m| m.version.clone()), width(|m| m.source.clone()), width(|m| m.size.to_string()));
    for m in &p.versions {
        let mark = if Some(m.hash.as_str()) == active { '*' } else { ' ' };
        let _ = writeln!(
            out,
            "  {mark} {}  {:<wv$}  {:<ws$}  {:>wz$} bytes  stored {}",
            short(&m.hash),
            m.version,
            m.source,
            m.size,
            utc(m.stored_at_ms)
        );
    }
    let _ = writeln!(out, "quarantined   {}", p.quarantined.len());
    for q in &p.quarantined {
        let _ = writeln!(
            out,
            "    {}  until {}  ({} times; {})",
            short(&q.hash),
            utc(q.until_ms),
            q.times,
            counts(&q.kinds)
        );
    }
    let _ = writeln!(out, "failures      {}", counts(&p.failures));
    match &p.last_error {
        Some(e) => {
            let _ = writeln!(
                out,
                "last error    {} from {} at {}: {}",
                short(&e.hash),
                e.source,
                utc(e.at_ms),
                one_line(&e.error)
            );
        }
        None => out.push_str("last error    -\n"),
    }
    out
}

/// Unix milliseconds as `YYYY-MM-DDTHH:MM:SSZ` (UTC), RFC 3339 to the second.
fn utc(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("{ms} (unix ms)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: PluginCmd,
    }

    #[test]
    fn the_command_line_parses_into_commands() {
        use clap::Parser;
        let args = ["imgate", "push", "echo", "e.wasm", "--version", "2", "--activate", "--gateway", "http://h:1"];
        let cli = Cli::try_parse_from(args.into_iter().chain(["--token", "t"])).unwrap();
        match cli.cmd {
            PluginCmd::Push { name, file, version, activate, gateway } => {
                assert_eq!(
                    (name.as_str(), file, version.as_deref(), activate),
                    ("echo", "e.wasm".into(), Some("2"), true)
                );
                assert_eq!((gateway.url.as_str(), gateway.token.as_str()), ("http://h:1", "t"));
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["imgate", "activate", "echo", "0123abcd", "--token", "t"]).unwrap();
        assert!(matches!(cli.cmd, PluginCmd::Activate { ref hash, .. } if hash == "0123abcd"));
    }

    #[test]
    fn the_kit_commands_parse_without_a_gateway() {
        use crate::plugin_kit::Lang;
        use crate::plugins::config::Capability;
        use clap::Parser;
        let cli = Cli::try_parse_from(["imgate", "new", "word-filter", "--lang", "python", "--dir", "d"]).unwrap();
        assert!(
            matches!(cli.cmd, PluginCmd::New { lang: Lang::Python, ref dir, .. } if dir.as_deref() == Some("d".as_ref()))
        );
        assert!(cli.cmd.gateway().is_none());
        let args = ["imgate", "test", "p.wasm", "--request", "r.json", "--capabilities", "config,wasi-stubs", "--json"];
        match Cli::try_parse_from(args).unwrap().cmd {
            PluginCmd::Test { component, capabilities, json, response, .. } => {
                assert_eq!(component, PathBuf::from("p.wasm"));
                assert_eq!(capabilities, [Capability::Config, Capability::WasiStubs]);
                assert!(json && response.is_none());
            }
            other => panic!("{other:?}"),
        }
        let err = Cli::try_parse_from(["imgate", "test", "p.wasm", "--request", "r", "--capabilities", "files"]);
        assert!(err.err().unwrap().to_string().contains("unknown capability"));
        assert!(Cli::try_parse_from(["imgate", "new", "x", "--lang", "cobol"]).is_err());
    }

    #[test]
    fn utc_formats_unix_milliseconds() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_700_000_000_123), "2023-11-14T22:13:20Z");
        assert_eq!(utc(-1_000), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn urls_escape_the_plugin_name_and_keep_a_base_path() {
        let gw = Gateway { url: "https://gw.example/prefix/".into(), token: "t".into() };
        let api = Api::new(&gw).unwrap();
        let url = api.url(&["a/b c", "versions"], &[("version", "1.0+x".into())]);
        assert_eq!(url.as_str(), "https://gw.example/prefix/v1/admin/plugins/a%2Fb%20c/versions?version=1.0%2Bx");
    }

    #[test]
    fn refusals_name_status_code_message_and_request_id() {
        let body = r#"{"code":"forbidden","message":"not allowed","request_id":"r1"}"#;
        assert_eq!(
            refusal("POST /x", StatusCode::FORBIDDEN, body),
            "POST /x: 403 forbidden: not allowed (request id r1)"
        );
        assert_eq!(
            refusal("GET /x", StatusCode::BAD_GATEWAY, "<html>\n</html>"),
            "GET /x: 502 Bad Gateway: <html> </html>"
        );
    }
}
