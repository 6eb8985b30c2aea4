//! The `imgate` command line: serve, dev, check-config, keygen, audit, plugin.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "imgate", version, about = "The gateway in front of OpenIM")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway with a config file.
    Serve {
        #[arg(short, long, default_value = "imgate.toml", env = "IMGATE_CONFIG")]
        config: PathBuf,
    },
    /// Check a config file (and every file it names); print every problem; exit 1 if any.
    CheckConfig { config: PathBuf },
    /// Start an embedded OpenIM emulator and the gateway with generated dev keys; writes
    /// `.imgate/dev/env.json` once everything answers. Runs until Ctrl-C / SIGTERM.
    Dev {
        /// Gateway port (default: a free one).
        #[arg(long)]
        port: Option<u16>,
        /// Where keys, config and env.json go.
        #[arg(long, default_value = ".imgate/dev")]
        dir: PathBuf,
        /// The folder of the built example plugins (plugins/target/wasm32-wasip2/release): the
        /// content-filter plugin then masks words in direct text messages.
        #[arg(long)]
        example_plugins: Option<PathBuf>,
    },
    /// Print a fresh X25519 key pair (gateway or device key) and an Ed25519 key pair (admin JWT).
    Keygen,
    /// Audit log tools.
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// Plugins: scaffold one (new) and run its hooks on a recorded request without a gateway (test);
    /// a running gateway's plugins through its admin API (ls, status, push, activate, rollback).
    Plugin {
        #[command(subcommand)]
        cmd: host::cli_plugin::PluginCmd,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Check audit files' hash chains; name the first edited, removed or reordered record's line.
    /// With several files (one per gateway), also check that no instance id appears in two of them
    /// and that no two start with the same record (a copied or forked file). Reads only (works
    /// while gateways write the files).
    Verify {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// A head read earlier (`GET /v1/admin/audit/head`, as `SEQ:HASH`): the file must still
        /// hold that record, so records cut off its end are detected too. Only with one FILE.
        #[arg(long, value_name = "SEQ:HASH")]
        head: Option<host::audit::AuditHead>,
    },
}

fn main() -> ExitCode {
    return_large_blocks_to_the_system();
    let cli = Cli::parse();
    if let Err(e) = check_args(&cli) {
        e.exit();
    }
    match cli.command {
        Command::Keygen => keygen(),
        Command::Audit { cmd: AuditCmd::Verify { files, head } } => audit_verify(&files, head.as_ref()),
        Command::CheckConfig { config } => check_config(&config),
        Command::Plugin { cmd } => match runtime().block_on(host::cli_plugin::run(cmd)) {
            Ok(out) => {
                print!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("imgate plugin: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Serve { config } => runtime().block_on(serve(config)),
        Command::Dev { port, dir, example_plugins } => dev(port, dir, example_plugins),
    }
}

#[cfg(feature = "emulator")]
fn dev(port: Option<u16>, dir: PathBuf, example_plugins: Option<PathBuf>) -> ExitCode {
    runtime().block_on(async move {
        let opts = host::dev::DevOptions { port, dir, example_plugins };
        match host::dev::run(opts, host::shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("imgate dev: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// A production build links no emulator: `imgate dev` says which feature it needs.
#[cfg(not(feature = "emulator"))]
fn dev(_port: Option<u16>, _dir: PathBuf, _example_plugins: Option<PathBuf>) -> ExitCode {
    eprintln!(
        "imgate dev: this imgate was built without the OpenIM emulator (cargo feature `emulator`, on by \
         default): cargo build -p host --features emulator"
    );
    ExitCode::FAILURE
}

/// What clap cannot say in attributes: a head anchor belongs to one chain, so `--head` takes
/// exactly one FILE.
fn check_args(cli: &Cli) -> Result<(), clap::Error> {
    if let Command::Audit { cmd: AuditCmd::Verify { files, head: Some(_) } } = &cli.command {
        if files.len() != 1 {
            let mut cli = Cli::command();
            cli.build(); // so the subcommand's usage line reads `imgate audit verify ...`
            let kind = clap::error::ErrorKind::ArgumentConflict;
            let message = "--head anchors one chain: give exactly one FILE with it";
            return Err(match cli.find_subcommand_mut("audit").and_then(|a| a.find_subcommand_mut("verify")) {
                Some(verify) => verify.error(kind, message),
                None => cli.error(kind, message),
            });
        }
    }
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    }
}

/// Builds the gateway from a config file; `watch` hands the file to the plugin watcher (so plugin
/// and chain changes in it apply while serving).
/// Builds the state of the config at `path`: to serve (its plugins watched with the file), or,
/// with `check_only`, to check it without writing anything.
fn load(path: &std::path::Path, check_only: bool) -> Result<host::AppState, host::config::ConfigErrors> {
    let config = host::Config::load(path)?;
    let base = path.parent().map(|p| p.to_path_buf()).unwrap_or_default();
    let config_file = (!check_only).then(|| path.to_path_buf());
    let options = host::state::BuildOptions { config_file, check_only, ..Default::default() };
    host::state::build_with(config, &base, options)
}

fn check_config(path: &std::path::Path) -> ExitCode {
    match load(path, true) {
        Ok(_) => {
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprint!("{}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}

async fn serve(path: PathBuf) -> ExitCode {
    let state = match load(&path, false) {
        Ok(s) => s,
        Err(e) => {
            eprint!("{}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let _log_writer = host::telemetry::init_logging(&state.config.telemetry);
    let base = path.parent().map(|p| p.to_path_buf()).unwrap_or_default();
    let state = match state.open_audit(&base).await {
        Ok(s) => s,
        Err(e) => {
            eprint!("{}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let audit = state.audit.clone();
    let listen = state.config.server.listen;
    let api = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let metrics = match state.config.telemetry.metrics_listen {
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("cannot listen on {addr} for metrics: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    tracing::info!(%listen, "imgate listening");
    host::run(state, api, metrics, host::shutdown_signal()).await;
    // Written, synced, and the file's lock released before the process says it is done.
    audit.close().await;
    ExitCode::SUCCESS
}

/// `imgate audit verify FILE...`: one line per file (`FILE: ok (N records) seq 1..N, instance ID`
/// on stdout, or `FILE: line L: why` on stderr), then, across files, one line per instance id
/// (or first record) found in more than one file, and per file named twice. Exit 1 if anything
/// failed.
fn audit_verify(files: &[PathBuf], head: Option<&host::audit::AuditHead>) -> ExitCode {
    let mut failed = false;
    let mut read = Vec::with_capacity(files.len());
    for file in files {
        let (summary, result) = host::audit::verify_chain(file, head);
        match result {
            Ok(()) => {
                let anchor = head.map(|h| format!("; holds head {h}")).unwrap_or_default();
                let n = summary.records;
                let records = if n == 1 { "record" } else { "records" };
                println!("{}: ok ({n} {records}{anchor}){}", file.display(), describe(&summary));
            }
            Err(e) => {
                failed = true;
                let before =
                    if summary.records > 0 { format!(" [before it:{}]", describe(&summary)) } else { String::new() };
                eprintln!("{}: {e}{before}", file.display());
            }
        }
        read.push((file, summary));
    }
    // Across files: each key (a file, an instance id, a first record) must belong to one file.
    let mut same_file: Vec<(PathBuf, Vec<&PathBuf>)> = Vec::new();
    let mut by_instance: Vec<(&str, Vec<&PathBuf>)> = Vec::new();
    let mut by_first: Vec<(&str, Vec<&PathBuf>)> = Vec::new();
    for (file, summary) in &read {
        if let Ok(real) = std::fs::canonicalize(file) {
            let again = same_file.iter().any(|(seen, _)| *seen == real);
            group(&mut same_file, real, file);
            if again {
                continue; // its ids and first record are the first naming's, not another file's
            }
        }
        for id in &summary.instances {
            group(&mut by_instance, id.as_str(), file);
        }
        if let Some(first) = &summary.first_hash {
            group(&mut by_first, first.as_str(), file);
        }
    }
    let list = |files: &[&PathBuf]| files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ");
    for (_, files) in same_file.iter().filter(|(_, files)| files.len() > 1) {
        failed = true;
        eprintln!("{}: one file named {} times", list(files), files.len());
    }
    for (id, files) in by_instance.iter().filter(|(_, files)| files.len() > 1) {
        failed = true;
        eprintln!(
            "{}: all hold records of instance {id}: {} chains written under one instance id (a copied or forked \
             file; every imgate writes its own file, under its own [store] instance_id)",
            list(files),
            files.len()
        );
    }
    for (_, files) in by_first.iter().filter(|(_, files)| files.len() > 1) {
        failed = true;
        eprintln!("{}: all start with the same record (one chain copied into several files)", list(files));
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Adds `file` to `key`'s group (groups stay in order of first appearance).
fn group<'a, K: PartialEq>(groups: &mut Vec<(K, Vec<&'a PathBuf>)>, key: K, file: &'a PathBuf) {
    match groups.iter_mut().find(|(k, _)| *k == key) {
        Some((_, files)) => files.push(file),
        None => groups.push((key, vec![file])),
    }
}

/// ` seq 1..N, instance(s) ID[, ID…][, K without instance (written before instance ids)]`;
/// empty for an empty chain.
fn describe(summary: &host::audit::ChainSummary) -> String {
    if summary.records == 0 {
        return String::new();
    }
    let mut parts = vec![format!("seq 1..{}", summary.records)];
    match summary.instances.len() {
        0 => {}
        1 => parts.push(format!("instance {}", summary.instances[0])),
        _ => parts.push(format!("instances {}", summary.instances.join(", "))),
    }
    if summary.without_instance > 0 {
        parts.push(format!("{} without instance (written before instance ids)", summary.without_instance));
    }
    format!(" {}", parts.join(", "))
}

fn keygen() -> ExitCode {
    let x = host::keys::GatewayKey::generate("generated");
    let admin = match host::keys::generate_admin_key() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("keygen: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("# X25519 (gateway static key or device key), base64 of 32 bytes");
    println!("x25519_private_key = \"{}\"", x.secret_b64());
    println!("x25519_public_key  = \"{}\"", x.public_b64());
    println!();
    println!("# Ed25519 (admin JWT signing key, EdDSA): keep the private key with the token issuer,");
    println!("# give the public key to imgate ([[admin.issuer]] keys)");
    print!("{}", admin.private_pem);
    print!("{}", admin.public_pem);
    ExitCode::SUCCESS
}

/// glibc's malloc raises its mmap threshold (up to 32 MiB) every time a large block is freed;
/// after that, multi-MiB buffers (request bodies, OpenIM answers, what plugins pass to host
/// calls) are carved out of per-thread arenas and stay there once freed: under load a gateway
/// kept hundreds of MiB it no longer used (issue 16). A fixed threshold gives every block over
/// 128 KiB a mapping of its own, returned to the system when it is freed.
///
/// (mimalloc was measured instead, issue 12: 17% fewer instructions per passthrough request, but
/// the gateway's RSS under 64 concurrent requests went from 22 to 37 MiB, and with plugins from
/// 42 to 118 MiB: kept glibc.)
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_large_blocks_to_the_system() {
    // SAFETY: mallopt only sets allocator parameters; it runs first thing in main, before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_large_blocks_to_the_system() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_takes_a_head_anchor() {
        let hash = "ab".repeat(32);
        let cli = Cli::try_parse_from(["imgate", "audit", "verify", "a.jsonl", "--head", &format!("7:{hash}")])
            .expect("parses");
        assert!(check_args(&cli).is_ok());
        let Command::Audit { cmd: AuditCmd::Verify { files, head } } = cli.command else { panic!("audit verify") };
        assert_eq!(files, [PathBuf::from("a.jsonl")]);
        assert_eq!(head, Some(host::audit::AuditHead { seq: 7, hash }));
        for bad in ["7", "x:ab", &format!("7:{}", "g".repeat(64)), "7:abcd"] {
            assert!(Cli::try_parse_from(["imgate", "audit", "verify", "a.jsonl", "--head", bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn verify_takes_several_files_but_a_head_only_with_one() {
        let cli = Cli::try_parse_from(["imgate", "audit", "verify", "a.jsonl", "b.jsonl"]).expect("parses");
        assert!(check_args(&cli).is_ok());
        let Command::Audit { cmd: AuditCmd::Verify { files, .. } } = &cli.command else { panic!("audit verify") };
        assert_eq!(files.len(), 2);
        assert!(Cli::try_parse_from(["imgate", "audit", "verify"]).is_err(), "a FILE is required");
        let head = format!("7:{}", "ab".repeat(32));
        let cli =
            Cli::try_parse_from(["imgate", "audit", "verify", "a.jsonl", "b.jsonl", "--head", &head]).expect("parses");
        let err = check_args(&cli).expect_err("--head with two files");
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
        assert!(err.to_string().contains("exactly one FILE"), "{err}");
    }
}
