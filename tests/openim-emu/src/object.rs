//! `/object/*` (OpenIM's S3 front, `S internal/rpc/third/s3.go`, `T s3/cont/controller.go`, minio
//! backend `T s3/minio/minio.go`), enough for the JS SDK's upload: `part_size` →
//! `initiate_multipart_upload` → one `PUT` per part to the signed URLs → `complete_multipart_upload`
//! → `GET /object/<name>` (302 to the stored bytes).
//!
//! The emulator is its own minio: signed URLs point at `/emu-s3/<bucket>/<key>` on the API
//! listener (the Host of the request; a real deployment uses minio's external address) and carry
//! no signature. Faithful details: object names must start with `<opUserID>/` unless admin; the
//! answer's `url` is `X-Request-Api` (or `http://<Host>`) + `/object/` + name, whatever the body's
//! `urlPrefix`; content is deduplicated by md5 (⚠ initiating an upload with the hash of any stored
//! file answers a URL to it at once, under the caller's name, without uploading a byte); the
//! `uploadID` is the base64 JSON OpenIM uses and is trusted at completion; and the inverted
//! `maxParts` check ("too many parts" when the file has *fewer* parts than `maxParts`).

use std::collections::{BTreeMap, HashMap};

use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::json::decode;
use crate::server::{Ctx, HResult, Handler};
use crate::state::{now_ms, random_md5};

pub fn routes() -> Vec<(&'static str, Handler)> {
    vec![
        ("/object/part_size", part_size as Handler),
        ("/object/initiate_multipart_upload", initiate_multipart_upload),
        ("/object/complete_multipart_upload", complete_multipart_upload),
    ]
}

/// Path prefix of the emulated minio on the API listener.
pub const S3_PREFIX: &str = "/emu-s3/";
const BUCKET: &str = "openim";
const MIN_PART_SIZE: i64 = 5 * 1024 * 1024;
const MAX_PART_SIZE: i64 = 5 * 1024 * 1024 * 1024;
const MAX_NUM_SIZE: i64 = 10_000;
/// `thirdServer.defaultExpire`.
const DEFAULT_EXPIRE_MS: i64 = 7 * 24 * 3600 * 1000;
const UPLOAD_MULTIPART: i32 = 1;
const UPLOAD_PRESIGNED: i32 = 2;

/// An object name's record (`model.Object`).
#[derive(Clone, Debug)]
struct ObjectRecord {
    key: String,
    content_type: String,
}

/// The in-memory bucket plus OpenIM's object-name table.
#[derive(Default)]
pub struct ObjectStore {
    /// key → bytes (hash-addressed objects and presigned temp uploads).
    blobs: HashMap<String, Vec<u8>>,
    /// minio upload ID → (key, part number → bytes).
    uploads: HashMap<String, (String, BTreeMap<i32, Vec<u8>>)>,
    /// object name → record.
    names: HashMap<String, ObjectRecord>,
}

/// `cont.multipartUploadID`, base64(JSON) as the client sees it.
#[derive(Serialize, Deserialize, Default)]
struct UploadId {
    #[serde(rename = "a", default, skip_serializing_if = "is_zero")]
    kind: i32,
    #[serde(rename = "b", default, skip_serializing_if = "String::is_empty")]
    id: String,
    #[serde(rename = "c", default, skip_serializing_if = "String::is_empty")]
    key: String,
    #[serde(rename = "d", default, skip_serializing_if = "is_zero64")]
    size: i64,
    #[serde(rename = "e", default, skip_serializing_if = "String::is_empty")]
    hash: String,
}

fn is_zero(v: &i32) -> bool {
    *v == 0
}
fn is_zero64(v: &i64) -> bool {
    *v == 0
}

fn hash_path(hash: &str) -> String {
    format!("openim/data/hash/{hash}")
}

fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

/// A plain Go error crossing gRPC: 500 with the text as detail.
fn internal(text: impl Into<String>) -> ApiError {
    ApiError::ServerInternal(text.into())
}

/// `setURLPrefix`: `X-Request-Api` (+ `object/`) or `http://<Host>/object/`.
fn url_prefix(headers: &HeaderMap) -> String {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let api = get("x-request-api");
    if !api.is_empty() {
        return if api.ends_with('/') { format!("{api}object/") } else { format!("{api}/object/") };
    }
    format!("http://{}/object/", get("host"))
}

/// Where the emulated minio is reached: the API listener itself.
fn s3_base(headers: &HeaderMap) -> String {
    let host = headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or("127.0.0.1");
    format!("http://{host}{S3_PREFIX}{BUCKET}/")
}

/// `checkUploadName`.
fn check_upload_name(ctx: &Ctx<'_>, name: &str) -> Result<(), ApiError> {
    if name.is_empty() {
        return Err(ApiError::Args("name is empty".into()));
    }
    if name.starts_with('/') {
        return Err(ApiError::Args("name cannot start with `/`".into()));
    }
    if name.trim().is_empty() {
        return Err(ApiError::Args("object name cannot be empty".into()));
    }
    if name.len() > 1024 {
        return Err(ApiError::Args("object name cannot be longer than 1024 characters".into()));
    }
    if !ctx.is_admin() && !name.starts_with(&format!("{}/", ctx.op_user)) {
        return Err(ApiError::NoPermission(format!("name must start with `{}/`", ctx.op_user)));
    }
    Ok(())
}

/// minio's `PartSize`.
fn compute_part_size(size: i64) -> Result<i64, ApiError> {
    if size <= 0 {
        return Err(internal("size must be greater than 0"));
    }
    if size > MAX_PART_SIZE * MAX_NUM_SIZE {
        return Err(internal("MINIO size must be less than the maximum allowed limit"));
    }
    if size <= MIN_PART_SIZE * MAX_NUM_SIZE {
        return Ok(MIN_PART_SIZE);
    }
    Ok(size / MAX_NUM_SIZE + i64::from(size % MAX_NUM_SIZE != 0))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Req {
    size: i64,
    hash: String,
    #[serde(rename = "maxParts")]
    max_parts: i32,
    name: String,
    #[serde(rename = "contentType")]
    content_type: String,
    #[serde(rename = "uploadID")]
    upload_id: String,
    parts: Option<Vec<String>>,
}

fn part_size(_ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    Ok(Some(json!({ "size": compute_part_size(r.size)? })))
}

fn key_values(pairs: &[(&str, String)]) -> Value {
    Value::Array(pairs.iter().map(|(k, v)| json!({"key": k, "values": [v]})).collect())
}

/// `InitiateMultipartUpload` → `InitiateUploadContentType`.
fn initiate_multipart_upload(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    check_upload_name(ctx, &r.name)?;
    if r.size < 0 {
        return Err(internal("invalid size"));
    }
    match hex::decode(&r.hash) {
        Err(e) => return Err(internal(format!("encoding/hex: {e}"))),
        Ok(b) if b.len() != 16 => return Err(internal("invalid md5")),
        Ok(_) => {}
    }
    let part_size = compute_part_size(r.size)?;
    let parts = r.size / part_size + i64::from(r.size % part_size != 0);
    // ⚠ Inverted upstream: rejects files with fewer parts than maxParts.
    if r.max_parts > 0 && parts > 0 && parts < i64::from(r.max_parts) {
        return Err(internal(format!("too many parts: {parts}")));
    }
    let mut st = ctx.lock();
    let store = &mut st.objects;
    if store.blobs.contains_key(&hash_path(&r.hash)) {
        // HashAlreadyExistsError: the name now points at the stored copy, no upload needed.
        let rec = ObjectRecord { key: hash_path(&r.hash), content_type: r.content_type };
        store.names.insert(r.name.clone(), rec);
        return Ok(Some(json!({"url": format!("{}{}", url_prefix(ctx.headers), r.name), "upload": null})));
    }
    let base = s3_base(ctx.headers);
    let (upload_id, sign) = if r.size <= part_size {
        let key = format!("openim/temp/{}/{}_{}_{}.presigned", now_ms() / 3_600_000, r.hash, r.size, random_md5());
        let id = UploadId {
            kind: UPLOAD_PRESIGNED,
            key: key.clone(),
            size: r.size,
            hash: r.hash.clone(),
            ..Default::default()
        };
        let part = json!({"partNumber": 1, "url": format!("{base}{key}"), "query": null, "header": null});
        (id, json!({"url": "", "query": null, "header": null, "parts": [part]}))
    } else {
        let minio_id = random_md5();
        let key = hash_path(&r.hash);
        store.uploads.insert(minio_id.clone(), (key.clone(), BTreeMap::new()));
        let max_parts = if r.max_parts < 0 { parts } else { i64::from(r.max_parts) };
        let sign = if max_parts > 0 {
            let parts: Vec<Value> = (1..=max_parts)
                .map(|n| {
                    json!({"partNumber": n, "url": "", "query": key_values(&[("partNumber", n.to_string())]),
                           "header": key_values(&[("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD".into())])})
                })
                .collect();
            json!({"url": format!("{base}{key}"), "query": key_values(&[("uploadId", minio_id.clone())]),
                   "header": null, "parts": parts})
        } else {
            Value::Null
        };
        (UploadId { kind: UPLOAD_MULTIPART, id: minio_id, key, size: r.size, hash: r.hash.clone() }, sign)
    };
    let upload_id = serde_json::to_vec(&upload_id).map_err(|e| internal(e.to_string()))?;
    Ok(Some(json!({"url": "", "upload": {
        "uploadID": base64::engine::general_purpose::STANDARD.encode(upload_id),
        "partSize": part_size, "sign": sign, "expireTime": now_ms() + DEFAULT_EXPIRE_MS,
    }})))
}

/// `CompleteMultipartUpload` → `CompleteUpload`: parts are the md5s of the uploaded parts; their
/// comma-joined md5 must be the file hash of the upload ID.
fn complete_multipart_upload(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    check_upload_name(ctx, &r.name)?;
    let bad_id = |e: String| internal(format!("invalid multipart upload id: {e}"));
    let raw = base64::engine::general_purpose::STANDARD.decode(&r.upload_id).map_err(|e| bad_id(e.to_string()))?;
    let up: UploadId = serde_json::from_slice(&raw).map_err(|e| bad_id(e.to_string()))?;
    let parts = r.parts.unwrap_or_default();
    if md5_hex(parts.join(",").as_bytes()) != up.hash {
        return Err(internal("md5 mismatching"));
    }
    let mut st = ctx.lock();
    let store = &mut st.objects;
    let target = hash_path(&up.hash);
    if !store.blobs.contains_key(&target) {
        let data = match up.kind {
            UPLOAD_MULTIPART => assemble(store, &up.id, &parts)?,
            UPLOAD_PRESIGNED => {
                let data =
                    store.blobs.get(&up.key).cloned().ok_or_else(|| internal("The specified key does not exist."))?;
                if data.len() as i64 != up.size {
                    return Err(internal("upload size mismatching"));
                }
                let sum = md5_hex(md5_hex(&data).as_bytes());
                if sum != up.hash {
                    return Err(ApiError::Args(format!("md5 mismatching {sum} != {}", up.hash)));
                }
                store.blobs.remove(&up.key);
                data
            }
            _ => return Err(internal("invalid upload id type")),
        };
        store.blobs.insert(target.clone(), data);
    }
    store.names.insert(r.name.clone(), ObjectRecord { key: target, content_type: r.content_type });
    Ok(Some(json!({ "url": format!("{}{}", url_prefix(ctx.headers), r.name) })))
}

/// minio `CompleteMultipartUpload`: part i+1 must have been uploaded with md5 `parts[i]`.
fn assemble(store: &mut ObjectStore, upload_id: &str, parts: &[String]) -> Result<Vec<u8>, ApiError> {
    let (_, uploaded) = store
        .uploads
        .get(upload_id)
        .ok_or_else(|| internal("The specified multipart upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."))?;
    let mut data = Vec::new();
    for (i, etag) in parts.iter().enumerate() {
        match uploaded.get(&(i as i32 + 1)) {
            Some(p) if md5_hex(p) == *etag => data.extend_from_slice(p),
            _ => {
                return Err(internal(
                    "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag.",
                ))
            }
        }
    }
    store.uploads.remove(upload_id);
    Ok(data)
}

fn text(status: StatusCode, body: String) -> Response {
    (status, body).into_response()
}

/// The non-POST requests of the API listener: `PUT`/`GET` on the emulated minio and
/// `GET /object/<name>` (OpenIM's `ObjectRedirect`, no operationID, no token ⚠). `None` = not
/// one of these (the caller answers 404).
pub fn serve_raw(
    app: &crate::server::App,
    method: &axum::http::Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<Response> {
    let path = uri.path();
    let query: HashMap<String, String> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut st = app.lock();
    let store = &mut st.objects;
    if let Some(key) =
        path.strip_prefix(S3_PREFIX).and_then(|p| p.strip_prefix(BUCKET)).and_then(|p| p.strip_prefix('/'))
    {
        if *method == axum::http::Method::PUT {
            match (query.get("uploadId"), query.get("partNumber").and_then(|n| n.parse::<i32>().ok())) {
                (Some(id), Some(n)) => match store.uploads.get_mut(id.as_str()) {
                    Some((_, parts)) => {
                        parts.insert(n, body.to_vec());
                    }
                    None => return Some(text(StatusCode::NOT_FOUND, "NoSuchUpload".into())),
                },
                _ => {
                    store.blobs.insert(key.to_string(), body.to_vec());
                }
            }
            let mut resp = StatusCode::OK.into_response();
            if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", md5_hex(body))) {
                resp.headers_mut().insert("etag", etag);
            }
            return Some(resp);
        }
        if *method == axum::http::Method::GET {
            let Some(data) = store.blobs.get(key) else {
                return Some(text(StatusCode::NOT_FOUND, "NoSuchKey".into()));
            };
            let mut resp = (StatusCode::OK, data.clone()).into_response();
            let ct = query.get("response-content-type").map(|c| percent_decode(c)).unwrap_or_default();
            if let Ok(ct) = HeaderValue::from_str(&ct) {
                if !ct.is_empty() {
                    resp.headers_mut().insert("content-type", ct);
                }
            }
            return Some(resp);
        }
        return None;
    }
    let name = percent_decode(path.strip_prefix("/object/")?);
    let name = name.as_str();
    if *method != axum::http::Method::GET {
        return None;
    }
    if name.is_empty() {
        return Some(text(StatusCode::BAD_REQUEST, "name is empty".into()));
    }
    let Some(rec) = store.names.get(name) else {
        return Some(text(StatusCode::NOT_FOUND, "RecordNotFoundError".into()));
    };
    let mut resp = StatusCode::FOUND.into_response();
    let location =
        format!("{}{}?response-content-type={}", s3_base(headers), rec.key, percent_encode(&rec.content_type));
    if let Ok(loc) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert("location", loc);
    }
    Some(resp)
}

/// `%XX` decoding of a URL component (invalid escapes stay as they are).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit() {
            let hexval = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
            out.push(hexval(b[i + 1]) * 16 + hexval(b[i + 2]));
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `%XX` encoding of everything but unreserved characters.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|c| match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (c as char).to_string(),
            _ => format!("%{c:02X}"),
        })
        .collect()
}
