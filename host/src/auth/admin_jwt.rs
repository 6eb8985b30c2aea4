//! Admin JWT verifier: authenticates `Authorization: Bearer <JWT>` on `/v1/admin/*`.
//!
//! Why it exists: the admin API (device enrollment, plugin management, session revocation) is
//! the most powerful surface of the gateway, and JWT verification is easy to get subtly wrong.
//! This module implements `client-auth.md` §7 and the `attacks.md` B3 table (J1–J20) on top of
//! `jsonwebtoken`, adding the checks that crate does not do by itself:
//!
//! * the Authorization header is capped at [`MAX_AUTHORIZATION_LEN`] bytes before anything is
//!   decoded;
//! * the JOSE header is decoded here first: base64url without padding, a JSON object without
//!   duplicate keys, and no `crit`, `jku`, `x5u`, `jwk`, `x5c` (or `b64`) parameter. Nothing named
//!   in a token is ever fetched or used as a key;
//! * `kid` is only a lookup key in a static, in-memory map (at most [`MAX_KID_LEN`] bytes); it
//!   selects the issuer, and the header's `alg` must be one of that issuer's algorithms. Every
//!   issuer has exactly one algorithm family, so key confusion (HS256 "signed" with a public key)
//!   cannot pass;
//! * `exp`, `iss`, `aud` and `sub` are required; `nbf` is checked when present; `exp`, `nbf` and
//!   `iat` must be JSON integers; `iss` must equal the issuer's `issuer`, `aud` must be (or
//!   contain) its `audience`; leeway is at most 60 s;
//! * the lifetime (`exp - iat`, and in any case `exp - now`) is capped per issuer, and an `iat` in
//!   the future is refused, so a far-future `iat` cannot stretch a token's life;
//! * key material is validated when the config is loaded (public keys only, RSA ≥ 2048 bits,
//!   HS256 secrets ≥ 32 bytes, P-256 for ES256, no weak Ed25519 keys), and a crypto self-test
//!   makes sure `jsonwebtoken` was built with a working backend (J20).
//!
//! Every rejection is an [`AdminAuthError`] whose variant is the audit-log reason; the HTTP layer
//! answers all of them with the same `401`, except [`AdminAuthError::MissingScope`] (`403`).
//! Error texts never echo token contents.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use crate::strict_json::parse_strict_json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::pkcs8::DecodePublicKey as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde::de::IgnoredAny;
use serde_json::{Map, Value};

/// Largest accepted `Authorization` header value, in bytes (attacks.md J14).
pub const MAX_AUTHORIZATION_LEN: usize = 8 * 1024;
/// Longest accepted `kid`, in bytes, in a token or in the config (attacks.md J5).
pub const MAX_KID_LEN: usize = 256;
/// Largest clock-skew leeway a config may set (client-auth.md §7).
pub const MAX_LEEWAY_SECS: u64 = 60;
/// Leeway used when the config does not set one.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;
/// Maximum token lifetime used when the config does not set one.
pub const DEFAULT_MAX_LIFETIME_SECS: u64 = 3600;
/// Shortest accepted HS256 secret, in bytes (attacks.md J19: ≥ 256 bits).
pub const MIN_HMAC_SECRET_LEN: usize = 32;
/// Smallest accepted RSA modulus, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus the RustCrypto backend verifies with, in bits.
pub const MAX_RSA_BITS: usize = 4096;
/// Largest key or JWKS file read at startup, in bytes.
const MAX_KEY_FILE_LEN: u64 = 1024 * 1024;

/// JOSE header parameters that make a token be rejected outright: `crit` (we understand no
/// extension), and the ones that name or embed a key (`jku`, `x5u`, `jwk`, `x5c`). `b64`
/// (RFC 7797 unencoded payload) is refused too: it changes what the signature covers.
pub const FORBIDDEN_HEADER_PARAMS: [&str; 6] = ["crit", "jku", "x5u", "jwk", "x5c", "b64"];

/// The `alg` names an issuer may list, one per family.
pub const SUPPORTED_ALGORITHMS: [&str; 4] = ["EdDSA", "ES256", "RS256", "HS256"];

fn default_leeway() -> u64 {
    DEFAULT_LEEWAY_SECS
}

fn default_max_lifetime() -> u64 {
    DEFAULT_MAX_LIFETIME_SECS
}

/// One `[[admin.issuer]]` table of the TOML config.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// Exact value the token's `iss` claim must have.
    pub issuer: String,
    /// Value the token's `aud` claim must be (or contain, when it is an array).
    pub audience: String,
    /// Allowed `alg` values, e.g. `["EdDSA"]`; names as in the JWT header, one family only:
    /// `EdDSA`, `ES256`, `RS256` or `HS256`. `none` is never allowed.
    pub algorithms: Vec<String>,
    /// Clock-skew leeway for `exp`/`nbf`/`iat`, seconds (default 30, at most 60).
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Maximum token lifetime, seconds (default 3600).
    #[serde(default = "default_max_lifetime")]
    pub max_lifetime_secs: u64,
    /// Static keys, each selected by its `kid`.
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    /// A local JWKS file (every key must carry a `kid`); never a URL.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
}

/// One static key of an issuer.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The `kid` tokens signed with this key carry; unique across all issuers.
    pub kid: String,
    /// PEM public key (Ed25519 / P-256 / RSA SPKI or PKCS#1) file; for HS256 a file holding the raw secret bytes
    pub file: PathBuf,
}

/// Who a verified admin token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminPrincipal {
    /// The token's `sub`.
    pub subject: String,
    /// The configured `issuer` of the issuer that vouched for the token.
    pub issuer: String,
    /// The space-separated `scope` claim, split (empty when the claim is absent).
    pub scopes: BTreeSet<String>,
}

impl AdminPrincipal {
    /// Whether the token carries `scope` (exact match; no scope implies another).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }

    /// `Ok` when the token carries `scope`, else [`AdminAuthError::MissingScope`] (→ 403).
    pub fn require_scope(&self, scope: &str) -> Result<(), AdminAuthError> {
        if self.has_scope(scope) {
            Ok(())
        } else {
            Err(AdminAuthError::MissingScope(scope.to_owned()))
        }
    }
}

/// Why an admin request was refused. Each variant is a reason for the audit log; the HTTP layer
/// maps all but [`AdminAuthError::MissingScope`] to the same `401`.
#[derive(Debug, thiserror::Error)]
pub enum AdminAuthError {
    /// No Authorization header, or not a `Bearer` one.
    #[error("missing bearer token")]
    Missing,
    /// The Authorization header exceeds [`MAX_AUTHORIZATION_LEN`].
    #[error("authorization header too large")]
    TooLarge,
    /// Not a compact JWS with a decodable JSON header/payload.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The header carries a parameter from [`FORBIDDEN_HEADER_PARAMS`].
    #[error("forbidden header parameter {0}")]
    ForbiddenHeader(String),
    /// No `kid`, or one not in the configured key set.
    #[error("unknown key id")]
    UnknownKid,
    /// The header's `alg` is not one the selected issuer allows.
    #[error("algorithm not allowed")]
    AlgorithmNotAllowed,
    /// Signature, exp, nbf, iat, iss, aud, sub, scope type, required claims…
    #[error("invalid token: {0}")]
    Invalid(String),
    /// `exp - iat` (or `exp - now`) exceeds the issuer's `max_lifetime_secs`.
    #[error("token lifetime exceeds the maximum")]
    LifetimeTooLong,
    /// The token is valid but lacks the scope the route needs (→ 403).
    #[error("missing scope {0}")]
    MissingScope(String),
}

impl AdminAuthError {
    /// `true` for the one case answered with `403` instead of `401`.
    pub fn is_forbidden(&self) -> bool {
        matches!(self, Self::MissingScope(_))
    }
}

/// Verifies admin bearer tokens against a static, validated key set.
pub struct AdminVerifier {
    issuers: Vec<IssuerState>,
    keys: HashMap<String, KeyEntry>,
}

struct IssuerState {
    issuer: String,
    audience: String,
    algorithms: Vec<Algorithm>,
    leeway: u64,
    max_lifetime: u64,
    validation: Validation,
}

struct KeyEntry {
    issuer: usize,
    key: DecodingKey,
}

impl fmt::Debug for AdminVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let issuers: Vec<&str> = self.issuers.iter().map(|i| i.issuer.as_str()).collect();
        let mut kids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        f.debug_struct("AdminVerifier").field("issuers", &issuers).field("kids", &kids).finish()
    }
}

impl AdminVerifier {
    /// Loads keys; relative paths are resolved against `base_dir`. Returns EVERY problem found
    /// (one string each, naming the issuer/kid/file), not just the first.
    pub fn from_config(issuers: &[IssuerConfig], base_dir: &Path) -> Result<AdminVerifier, Vec<String>> {
        let mut errors = validate_config(issuers);
        if let Err(e) = crypto_self_test() {
            // Without a backend every key probe would panic: stop here.
            errors.push(e);
            return Err(errors);
        }

        let mut states = Vec::with_capacity(issuers.len());
        let mut keys: HashMap<String, KeyEntry> = HashMap::new();
        // kid -> where it was defined; static/static duplicates are reported by validate_config.
        let mut origins: HashMap<String, KeyOrigin> = HashMap::new();

        for (i, cfg) in issuers.iter().enumerate() {
            let at = issuer_label(i, cfg);
            let (algorithms, alg_errors) = parse_algorithms(&cfg.algorithms);
            let family = if alg_errors.is_empty() { single_family(&algorithms) } else { None };
            states.push(IssuerState {
                issuer: cfg.issuer.clone(),
                audience: cfg.audience.clone(),
                validation: build_validation(cfg, &algorithms),
                algorithms: algorithms.clone(),
                leeway: cfg.leeway_secs,
                max_lifetime: cfg.max_lifetime_secs,
            });
            // Keys cannot be interpreted without a valid family; validate_config said why.
            let Some(family) = family else { continue };

            for key in &cfg.keys {
                if key.kid.is_empty() || key.kid.len() > MAX_KID_LEN {
                    continue; // reported by validate_config
                }
                let path = resolve(base_dir, &key.file);
                match load_key_file(&path, family) {
                    Ok(dk) => insert_key(
                        &mut keys,
                        &mut origins,
                        &mut errors,
                        &key.kid,
                        KeyOrigin { issuer: i, jwks: None },
                        dk,
                    ),
                    Err(e) => errors.push(format!("{at}: key {:?} (file {}): {e}", key.kid, path.display())),
                }
            }

            if let Some(jwks) = &cfg.jwks_file {
                if family == AlgorithmFamily::Hmac || jwks.as_os_str().is_empty() {
                    continue; // reported by validate_config
                }
                let path = resolve(base_dir, jwks);
                let (loaded, problems) = load_jwks(&path, family, &algorithms);
                errors.extend(problems.into_iter().map(|p| format!("{at}: JWKS file {}: {p}", path.display())));
                for (kid, dk) in loaded {
                    let origin = KeyOrigin { issuer: i, jwks: Some(path.clone()) };
                    insert_key(&mut keys, &mut origins, &mut errors, &kid, origin, dk);
                }
            }
        }

        if errors.is_empty() {
            Ok(AdminVerifier { issuers: states, keys })
        } else {
            Err(errors)
        }
    }

    /// `authorization` = the raw Authorization header value if present.
    pub fn verify(&self, authorization: Option<&[u8]>) -> Result<AdminPrincipal, AdminAuthError> {
        let token = bearer_token(authorization)?;

        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            let n = token.split('.').count();
            return Err(AdminAuthError::Malformed(format!("expected 3 dot-separated segments, found {n}")));
        };

        let header = decode_json_segment(header_b64, "header")?;
        if let Some(name) = FORBIDDEN_HEADER_PARAMS.iter().find(|p| header.contains_key(**p)) {
            return Err(AdminAuthError::ForbiddenHeader((*name).to_owned()));
        }
        let alg_name = match header.get("alg") {
            Some(Value::String(alg)) => alg.as_str(),
            Some(_) => return Err(AdminAuthError::Malformed("`alg` is not a string".into())),
            None => return Err(AdminAuthError::Malformed("header has no `alg`".into())),
        };
        let kid = match header.get("kid") {
            Some(Value::String(kid)) => kid.as_str(),
            Some(_) => return Err(AdminAuthError::Malformed("`kid` is not a string".into())),
            None => return Err(AdminAuthError::UnknownKid),
        };
        if kid.len() > MAX_KID_LEN {
            return Err(AdminAuthError::UnknownKid);
        }
        // `kid` is a lookup key in a static map and nothing else (J5).
        let entry = self.keys.get(kid).ok_or(AdminAuthError::UnknownKid)?;
        let issuer = &self.issuers[entry.issuer];
        match algorithm_from_name(alg_name) {
            Some(alg) if issuer.algorithms.contains(&alg) => {}
            _ => return Err(AdminAuthError::AlgorithmNotAllowed),
        }
        if signature_b64.is_empty() {
            return Err(AdminAuthError::Invalid("empty signature".into()));
        }

        // Signature and the registered claims, as jsonwebtoken sees them.
        jsonwebtoken::decode::<IgnoredAny>(token, &entry.key, &issuer.validation).map_err(map_jwt_error)?;

        // The same claims again, strictly, plus what jsonwebtoken does not check.
        let claims = decode_json_segment(payload_b64, "payload")?;
        check_claims(issuer, &claims, jsonwebtoken::get_current_timestamp())
    }
}

/// Static checks without touching files (families mixed, leeway > 60, unknown alg name, "none",
/// empty issuer/audience, duplicate kid, neither keys nor jwks_file, HS256 with JWKS…);
/// [`AdminVerifier::from_config`] calls it too. One message per problem.
pub fn validate_config(issuers: &[IssuerConfig]) -> Vec<String> {
    let mut errors = Vec::new();
    let mut kid_owner: HashMap<&str, usize> = HashMap::new();

    for (i, cfg) in issuers.iter().enumerate() {
        let at = issuer_label(i, cfg);
        if cfg.issuer.trim().is_empty() {
            errors.push(format!("{at}: `issuer` must not be empty"));
        }
        if cfg.audience.trim().is_empty() {
            errors.push(format!("{at}: `audience` must not be empty"));
        }

        let (algorithms, alg_errors) = parse_algorithms(&cfg.algorithms);
        errors.extend(alg_errors.into_iter().map(|e| format!("{at}: {e}")));
        let mut families: Vec<AlgorithmFamily> = Vec::new();
        for alg in &algorithms {
            if !families.contains(&alg.family()) {
                families.push(alg.family());
            }
        }
        if families.len() > 1 {
            errors.push(format!(
                "{at}: algorithms {:?} mix algorithm families; list one family per issuer",
                cfg.algorithms
            ));
        }
        let is_hmac = families == [AlgorithmFamily::Hmac];

        if cfg.leeway_secs > MAX_LEEWAY_SECS {
            errors.push(format!("{at}: leeway_secs = {} exceeds the maximum of {MAX_LEEWAY_SECS}", cfg.leeway_secs));
        }
        if cfg.max_lifetime_secs == 0 {
            errors.push(format!("{at}: max_lifetime_secs must be greater than 0"));
        }

        if cfg.keys.is_empty() && cfg.jwks_file.is_none() {
            errors.push(format!("{at}: no keys: set `keys` or `jwks_file`"));
        }
        if let Some(jwks) = &cfg.jwks_file {
            if is_hmac {
                errors.push(format!("{at}: HS256 secrets cannot come from a JWKS file; use `keys` with a secret file"));
            } else if jwks.as_os_str().is_empty() {
                errors.push(format!("{at}: `jwks_file` must not be empty"));
            }
        }

        for key in &cfg.keys {
            if key.kid.is_empty() {
                errors.push(format!("{at}: a key has an empty `kid`"));
                continue;
            }
            if key.kid.len() > MAX_KID_LEN {
                errors.push(format!("{at}: kid {:?}… is longer than {MAX_KID_LEN} bytes", truncate(&key.kid, 32)));
                continue;
            }
            if key.file.as_os_str().is_empty() {
                errors.push(format!("{at}: key {:?} has an empty `file`", key.kid));
            }
            match kid_owner.get(key.kid.as_str()) {
                Some(&first) => errors.push(format!(
                    "{at}: kid {:?} is already used by {}; kids must be unique across issuers",
                    key.kid,
                    issuer_label(first, &issuers[first])
                )),
                None => {
                    kid_owner.insert(&key.kid, i);
                }
            }
        }
    }
    errors
}

// ---------------------------------------------------------------------------------------------
// Token checks
// ---------------------------------------------------------------------------------------------

/// Extracts the token from `Bearer <token>`, enforcing the size cap and the base64url alphabet.
fn bearer_token(authorization: Option<&[u8]>) -> Result<&str, AdminAuthError> {
    let raw = authorization.ok_or(AdminAuthError::Missing)?;
    if raw.len() > MAX_AUTHORIZATION_LEN {
        return Err(AdminAuthError::TooLarge);
    }
    let value = std::str::from_utf8(raw)
        .map_err(|_| AdminAuthError::Malformed("authorization header is not UTF-8".into()))?
        .trim_matches(|c| c == ' ' || c == '\t');
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AdminAuthError::Missing);
    }
    let token = rest.trim_start_matches(' ');
    if token.is_empty() {
        return Err(AdminAuthError::Missing);
    }
    if !token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.') {
        return Err(AdminAuthError::Malformed("token has characters outside base64url and '.'".into()));
    }
    Ok(token)
}

/// base64url (no padding) → JSON object without duplicate keys.
fn decode_json_segment(segment: &str, what: &str) -> Result<Map<String, Value>, AdminAuthError> {
    if segment.is_empty() {
        return Err(AdminAuthError::Malformed(format!("empty {what}")));
    }
    let bytes =
        URL_SAFE_NO_PAD.decode(segment).map_err(|_| AdminAuthError::Malformed(format!("{what} is not base64url")))?;
    match parse_strict_json(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(AdminAuthError::Malformed(format!("{what} is not a JSON object"))),
        Err(e) => Err(AdminAuthError::Malformed(format!("{what}: {e}"))),
    }
}

/// The claim checks on top of jsonwebtoken's: strict types, exact `iss`, `aud`, non-empty `sub`,
/// `iat` sanity, the lifetime cap and the scopes.
fn check_claims(issuer: &IssuerState, claims: &Map<String, Value>, now: u64) -> Result<AdminPrincipal, AdminAuthError> {
    let invalid = |msg: &str| AdminAuthError::Invalid(msg.to_owned());
    let exp = numeric_date(claims, "exp")?.ok_or_else(|| invalid("missing claim exp"))?;
    let nbf = numeric_date(claims, "nbf")?;
    let iat = numeric_date(claims, "iat")?;
    let leeway = issuer.leeway;

    if exp.saturating_add(leeway) < now {
        return Err(invalid("token expired"));
    }
    if nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
        return Err(invalid("token not yet valid (nbf)"));
    }
    if let Some(iat) = iat {
        if iat > now.saturating_add(leeway) {
            return Err(invalid("iat is in the future"));
        }
        if exp < iat {
            return Err(invalid("exp is before iat"));
        }
        if exp - iat > issuer.max_lifetime {
            return Err(AdminAuthError::LifetimeTooLong);
        }
    }
    // Whatever `iat` says (or without one), a token may not outlive now + the maximum lifetime.
    if exp > now.saturating_add(leeway).saturating_add(issuer.max_lifetime) {
        return Err(AdminAuthError::LifetimeTooLong);
    }

    match claims.get("iss") {
        Some(Value::String(iss)) if *iss == issuer.issuer => {}
        Some(Value::String(_)) => return Err(invalid("wrong issuer")),
        Some(_) => return Err(invalid("iss is not a string")),
        None => return Err(invalid("missing claim iss")),
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(aud)) => *aud == issuer.audience,
        Some(Value::Array(items)) => {
            if !items.iter().all(Value::is_string) {
                return Err(invalid("aud array holds a non-string"));
            }
            items.iter().any(|a| a.as_str() == Some(issuer.audience.as_str()))
        }
        Some(_) => return Err(invalid("aud is neither a string nor an array")),
        None => return Err(invalid("missing claim aud")),
    };
    if !aud_ok {
        return Err(invalid("wrong audience"));
    }
    let subject = match claims.get("sub") {
        Some(Value::String(sub)) if sub.is_empty() => return Err(invalid("empty sub")),
        Some(Value::String(sub)) if sub.chars().any(char::is_control) => {
            return Err(invalid("sub contains control characters"))
        }
        Some(Value::String(sub)) => sub.clone(),
        Some(_) => return Err(invalid("sub is not a string")),
        None => return Err(invalid("missing claim sub")),
    };
    let scopes = match claims.get("scope") {
        None => BTreeSet::new(),
        Some(Value::String(scope)) => scope.split_ascii_whitespace().map(str::to_owned).collect(),
        Some(_) => return Err(invalid("scope is not a space-separated string")),
    };

    Ok(AdminPrincipal { subject, issuer: issuer.issuer.clone(), scopes })
}

/// A NumericDate claim: absent, or a non-negative JSON integer (no string, float, negative or
/// out-of-range number — attacks.md J8).
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, AdminAuthError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) if n.is_u64() => Ok(n.as_u64()),
        Some(_) => Err(AdminAuthError::Invalid(format!("claim {name} is not an integer NumericDate"))),
    }
}

fn map_jwt_error(e: jsonwebtoken::errors::Error) -> AdminAuthError {
    use AdminAuthError::{AlgorithmNotAllowed, Invalid, Malformed};
    match e.kind() {
        ErrorKind::InvalidSignature => Invalid("bad signature".into()),
        ErrorKind::ExpiredSignature => Invalid("token expired".into()),
        ErrorKind::ImmatureSignature => Invalid("token not yet valid (nbf)".into()),
        ErrorKind::InvalidIssuer => Invalid("wrong issuer".into()),
        ErrorKind::InvalidAudience => Invalid("wrong audience".into()),
        ErrorKind::InvalidSubject => Invalid("wrong subject".into()),
        ErrorKind::MissingRequiredClaim(c) => Invalid(format!("missing claim {c}")),
        ErrorKind::InvalidClaimFormat(c) => Invalid(format!("claim {c} is not an integer NumericDate")),
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm => AlgorithmNotAllowed,
        ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
            Malformed(e.to_string())
        }
        _ => Invalid(e.to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// Config helpers
// ---------------------------------------------------------------------------------------------

fn issuer_label(i: usize, cfg: &IssuerConfig) -> String {
    format!("admin.issuer[{i}] ({:?})", truncate(&cfg.issuer, 128))
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn algorithm_from_name(name: &str) -> Option<Algorithm> {
    match name {
        "EdDSA" => Some(Algorithm::EdDSA),
        "ES256" => Some(Algorithm::ES256),
        "RS256" => Some(Algorithm::RS256),
        "HS256" => Some(Algorithm::HS256),
        _ => None,
    }
}

/// Parses an issuer's algorithm list; returns the (deduplicated) algorithms and one message per
/// bad name.
fn parse_algorithms(names: &[String]) -> (Vec<Algorithm>, Vec<String>) {
    let mut algorithms = Vec::new();
    let mut errors = Vec::new();
    if names.is_empty() {
        errors.push("`algorithms` must list at least one algorithm".to_owned());
    }
    for name in names {
        if name.trim().eq_ignore_ascii_case("none") {
            errors.push(format!("algorithm {name:?} is never allowed"));
            continue;
        }
        match algorithm_from_name(name) {
            Some(alg) if !algorithms.contains(&alg) => algorithms.push(alg),
            Some(_) => {}
            None => errors.push(format!(
                "unsupported algorithm {:?} (supported: {})",
                truncate(name, 32),
                SUPPORTED_ALGORITHMS.join(", ")
            )),
        }
    }
    (algorithms, errors)
}

fn single_family(algorithms: &[Algorithm]) -> Option<AlgorithmFamily> {
    let first = algorithms.first()?.family();
    algorithms.iter().all(|a| a.family() == first).then_some(first)
}

fn build_validation(cfg: &IssuerConfig, algorithms: &[Algorithm]) -> Validation {
    let mut v = Validation::new(algorithms.first().copied().unwrap_or(Algorithm::EdDSA));
    v.algorithms = algorithms.to_vec();
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    v.leeway = cfg.leeway_secs.min(MAX_LEEWAY_SECS);
    v.reject_tokens_expiring_in_less_than = 0;
    v.validate_exp = true;
    v.validate_nbf = true;
    v.validate_aud = true;
    v.set_issuer(&[cfg.issuer.as_str()]);
    v.set_audience(&[cfg.audience.as_str()]);
    v
}

fn resolve(base_dir: &Path, file: &Path) -> PathBuf {
    if file.is_absolute() {
        file.to_path_buf()
    } else {
        base_dir.join(file)
    }
}

struct KeyOrigin {
    issuer: usize,
    /// `None` for a `[[admin.issuer.keys]]` entry, else the JWKS file it came from.
    jwks: Option<PathBuf>,
}

impl KeyOrigin {
    fn describe(&self) -> String {
        match &self.jwks {
            None => format!("admin.issuer[{}] keys", self.issuer),
            Some(p) => format!("admin.issuer[{}] JWKS file {}", self.issuer, p.display()),
        }
    }
}

fn insert_key(
    keys: &mut HashMap<String, KeyEntry>,
    origins: &mut HashMap<String, KeyOrigin>,
    errors: &mut Vec<String>,
    kid: &str,
    origin: KeyOrigin,
    key: DecodingKey,
) {
    if let Some(first) = origins.get(kid) {
        // Two static keys with one kid were already reported by validate_config.
        if first.jwks.is_some() || origin.jwks.is_some() {
            errors.push(format!(
                "kid {kid:?} is defined twice ({} and {}); kids must be unique across issuers",
                first.describe(),
                origin.describe()
            ));
        }
        return;
    }
    keys.insert(kid.to_owned(), KeyEntry { issuer: origin.issuer, key });
    origins.insert(kid.to_owned(), origin);
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE_LEN + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_KEY_FILE_LEN {
        return Err(format!("larger than {MAX_KEY_FILE_LEN} bytes"));
    }
    Ok(bytes)
}

/// Checks that `bytes` is exactly one PEM block with one of `labels` and returns it as text.
fn pem_text<'a>(bytes: &'a [u8], labels: &[&str]) -> Result<&'a str, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not a PEM file (not UTF-8)".to_owned())?;
    let text = text.trim();
    if text.contains("PRIVATE KEY-----") {
        return Err("holds a private key; configure the public key only".into());
    }
    if text.contains("CERTIFICATE-----") {
        return Err("holds a certificate; configure its public key (SPKI PEM) instead".into());
    }
    if text.matches("-----BEGIN ").count() != 1 {
        return Err("must hold exactly one PEM public key".into());
    }
    if !labels.iter().any(|l| text.starts_with(&format!("-----BEGIN {l}-----"))) {
        let wanted: Vec<String> = labels.iter().map(|l| format!("`{l}`")).collect();
        return Err(format!("not a PEM {} block", wanted.join(" or ")));
    }
    Ok(text)
}

fn load_key_file(path: &Path, family: AlgorithmFamily) -> Result<DecodingKey, String> {
    let bytes = read_bounded(path)?;
    match family {
        AlgorithmFamily::Hmac => {
            if bytes.starts_with(b"-----BEGIN") {
                return Err("holds a PEM document, not an HS256 secret".into());
            }
            if bytes.len() < MIN_HMAC_SECRET_LEN {
                return Err(format!(
                    "HS256 secret is {} bytes; at least {MIN_HMAC_SECRET_LEN} are required",
                    bytes.len()
                ));
            }
            Ok(DecodingKey::from_secret(&bytes))
        }
        AlgorithmFamily::Ed => {
            let pem = pem_text(&bytes, &["PUBLIC KEY"])?;
            let vk = ed25519_dalek::VerifyingKey::from_public_key_pem(pem)
                .map_err(|e| format!("not an Ed25519 public key: {e}"))?;
            ed25519_key(&vk)
        }
        AlgorithmFamily::Ec => {
            pem_text(&bytes, &["PUBLIC KEY"])?;
            let key = DecodingKey::from_ec_pem(&bytes).map_err(|e| format!("not an EC public key: {e}"))?;
            probe_key(&key, Algorithm::ES256)?;
            Ok(key)
        }
        AlgorithmFamily::Rsa => {
            pem_text(&bytes, &["PUBLIC KEY", "RSA PUBLIC KEY"])?;
            let key = DecodingKey::from_rsa_pem(&bytes).map_err(|e| format!("not an RSA public key: {e}"))?;
            let der = key.try_get_as_bytes().map_err(|e| e.to_string())?;
            let (n, e) = pkcs1_rsa_public_key(der)?;
            check_rsa_components(n, e)?;
            Ok(key)
        }
    }
}

fn ed25519_key(vk: &ed25519_dalek::VerifyingKey) -> Result<DecodingKey, String> {
    if vk.is_weak() {
        return Err("weak (small-order) Ed25519 public key".into());
    }
    // jsonwebtoken's Ed verifier takes the raw 32-byte public key; `from_ed_der` stores it as is.
    let key = DecodingKey::from_ed_der(vk.as_bytes());
    probe_key(&key, Algorithm::EdDSA)?;
    Ok(key)
}

/// Runs one verification with a well-formed wrong signature: the backend must accept the key
/// (an `Err` means it cannot parse it, e.g. a P-384 key for ES256) and reject the signature.
fn probe_key(key: &DecodingKey, alg: Algorithm) -> Result<(), String> {
    let signature = URL_SAFE_NO_PAD.encode([1u8; 64]);
    match jsonwebtoken::crypto::verify(&signature, b"imgate key probe", key, alg) {
        Ok(false) => Ok(()),
        Ok(true) => Err("key accepted a forged probe signature".into()),
        Err(e) => Err(format!("key unusable for {alg:?}: {e}")),
    }
}

fn check_rsa_components(n: &[u8], e: &[u8]) -> Result<(), String> {
    let n = strip_leading_zeros(n);
    let e = strip_leading_zeros(e);
    let bits = match n.first() {
        Some(&top) => (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
        None => 0,
    };
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(format!("RSA modulus is {bits} bits; {MIN_RSA_BITS} to {MAX_RSA_BITS} are accepted"));
    }
    let exponent = if e.len() <= 8 { e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)) } else { u64::MAX };
    if exponent < 3 || exponent % 2 == 0 || exponent > (1u64 << 33) - 1 {
        return Err("RSA public exponent must be odd, at least 3 and below 2^33".into());
    }
    Ok(())
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// Parses a PKCS#1 `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` (DER,
/// with the `pkcs1` crate) and returns (n, e) as big-endian magnitudes.
fn pkcs1_rsa_public_key(der: &[u8]) -> Result<(&[u8], &[u8]), String> {
    use pkcs1::der::Decode;
    let key = pkcs1::RsaPublicKey::from_der(der).map_err(|_| "malformed PKCS#1 RSA public key".to_owned())?;
    Ok((key.modulus.as_bytes(), key.public_exponent.as_bytes()))
}

/// Loads the keys of `family` from a JWKS file: returns the usable keys and one message per
/// problem. Keys of other families, `use: "enc"` keys, keys whose `key_ops` (RFC 7517 §4.3) do
/// not include `verify`, and keys whose `alg` the issuer does not allow are skipped; anything
/// wrong with a key that would be used is a problem.
fn load_jwks(
    path: &Path,
    family: AlgorithmFamily,
    algorithms: &[Algorithm],
) -> (Vec<(String, DecodingKey)>, Vec<String>) {
    let bytes = match read_bounded(path) {
        Ok(bytes) => bytes,
        Err(e) => return (Vec::new(), vec![e]),
    };
    let root = match parse_strict_json(&bytes) {
        Ok(root) => root,
        Err(e) => return (Vec::new(), vec![format!("not valid JSON: {e}")]),
    };
    let Some(keys) = root.get("keys").and_then(Value::as_array) else {
        return (Vec::new(), vec!["no `keys` array".to_owned()]);
    };

    let mut loaded = Vec::new();
    let mut problems = Vec::new();
    for (j, jwk) in keys.iter().enumerate() {
        let Some(obj) = jwk.as_object() else {
            problems.push(format!("key #{j} is not a JSON object"));
            continue;
        };
        let kid = match obj.get("kid") {
            Some(Value::String(kid)) if !kid.is_empty() && kid.len() <= MAX_KID_LEN => kid,
            _ => {
                problems
                    .push(format!("key #{j} has no usable `kid` (a non-empty string of at most {MAX_KID_LEN} bytes)"));
                continue;
            }
        };
        if obj.get("use").is_some_and(|u| u != "sig") {
            continue;
        }
        // A key published for other operations (`["encrypt"]`, Wycheproof JWS tc355/356) never
        // verifies a signature; `key_ops` that is not a list of strings is not a verify key either.
        if let Some(ops) = obj.get("key_ops") {
            let verifies = ops.as_array().is_some_and(|ops| ops.iter().any(|op| op == "verify"));
            if !verifies {
                continue;
            }
        }
        let key_family = match obj.get("kty").and_then(Value::as_str) {
            Some("OKP") => AlgorithmFamily::Ed,
            Some("EC") => AlgorithmFamily::Ec,
            Some("RSA") => AlgorithmFamily::Rsa,
            Some("oct") => AlgorithmFamily::Hmac,
            _ => {
                problems.push(format!("key #{j} (kid {kid:?}): missing or unsupported `kty`"));
                continue;
            }
        };
        if key_family != family {
            continue;
        }
        if let Some(alg) = obj.get("alg") {
            let allowed = alg.as_str().and_then(algorithm_from_name).is_some_and(|a| algorithms.contains(&a));
            if !allowed {
                continue;
            }
        }
        if ["d", "p", "q", "dp", "dq", "qi", "oth", "k"].iter().any(|f| obj.contains_key(*f)) {
            problems.push(format!("key #{j} (kid {kid:?}) contains private key material; publish public keys only"));
            continue;
        }
        match jwk_decoding_key(obj, family) {
            Ok(key) => loaded.push((kid.clone(), key)),
            Err(e) => problems.push(format!("key #{j} (kid {kid:?}): {e}")),
        }
    }
    if problems.is_empty() && loaded.is_empty() {
        problems.push(format!("no usable {family:?} signing key"));
    }
    (loaded, problems)
}

fn jwk_member<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<&'a str, String> {
    obj.get(name).and_then(Value::as_str).ok_or_else(|| format!("missing string member `{name}`"))
}

fn jwk_bytes(obj: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD.decode(jwk_member(obj, name)?).map_err(|_| format!("`{name}` is not base64url without padding"))
}

fn jwk_decoding_key(obj: &Map<String, Value>, family: AlgorithmFamily) -> Result<DecodingKey, String> {
    match family {
        AlgorithmFamily::Ed => {
            if jwk_member(obj, "crv")? != "Ed25519" {
                return Err("`crv` must be Ed25519".into());
            }
            let x: [u8; 32] = jwk_bytes(obj, "x")?.try_into().map_err(|_| "`x` must be 32 bytes".to_owned())?;
            let vk = ed25519_dalek::VerifyingKey::from_bytes(&x)
                .map_err(|_| "`x` is not an Ed25519 public key".to_owned())?;
            ed25519_key(&vk)
        }
        AlgorithmFamily::Ec => {
            if jwk_member(obj, "crv")? != "P-256" {
                return Err("`crv` must be P-256 for ES256".into());
            }
            if jwk_bytes(obj, "x")?.len() != 32 || jwk_bytes(obj, "y")?.len() != 32 {
                return Err("`x` and `y` must be 32 bytes each".into());
            }
            let key = DecodingKey::from_ec_components(jwk_member(obj, "x")?, jwk_member(obj, "y")?)
                .map_err(|e| e.to_string())?;
            probe_key(&key, Algorithm::ES256)?;
            Ok(key)
        }
        AlgorithmFamily::Rsa => {
            let n = jwk_bytes(obj, "n")?;
            let e = jwk_bytes(obj, "e")?;
            check_rsa_components(&n, &e)?;
            Ok(DecodingKey::from_rsa_raw_components(&n, &e))
        }
        AlgorithmFamily::Hmac => Err("HS256 keys cannot come from a JWKS file".into()),
    }
}

// ---------------------------------------------------------------------------------------------
// Crypto backend self-test (attacks.md J20)
// ---------------------------------------------------------------------------------------------

/// Signs and verifies a throwaway HS256 token, and checks a wrong key is refused. jsonwebtoken
/// 10/11 panic at first use when built without (or with two) crypto backends: catch that here,
/// at startup, instead of on the first admin request.
fn crypto_self_test() -> Result<(), String> {
    let outcome = std::panic::catch_unwind(|| -> Result<(), String> {
        let secret: [u8; 32] = rand::random();
        let now = jsonwebtoken::get_current_timestamp();
        let claims = serde_json::json!({
            "iss": "imgate-self-test", "aud": "imgate-self-test", "sub": "self-test",
            "iat": now, "exp": now + 60,
        });
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(&secret),
        )
        .map_err(|e| format!("signing failed: {e}"))?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&["imgate-self-test"]);
        validation.set_audience(&["imgate-self-test"]);
        jsonwebtoken::decode::<IgnoredAny>(&token, &DecodingKey::from_secret(&secret), &validation)
            .map_err(|e| format!("a freshly signed token did not verify: {e}"))?;
        let mut wrong = secret;
        wrong[0] ^= 1;
        if jsonwebtoken::decode::<IgnoredAny>(&token, &DecodingKey::from_secret(&wrong), &validation).is_ok() {
            return Err("a token verified under the wrong key".into());
        }
        Ok(())
    });
    match outcome {
        Ok(result) => result.map_err(|e| format!("jsonwebtoken crypto self-test failed: {e}")),
        Err(_) => Err("jsonwebtoken crypto self-test panicked: no usable crypto backend \
                       (enable exactly one of its `rust_crypto` / `aws_lc_rs` features)"
            .into()),
    }
}

#[cfg(test)]
mod tests;
