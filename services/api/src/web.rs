//! The web client (`web/`, built to `web/dist`), served same-origin at `/` so that the browser
//! talks to the API without CORS. The build is read once at start-up into memory: only files that
//! exist in it can be served (no path from a request ever reaches the file system), and each gets
//! its ETag up front. Any other GET that is not an API path gets `index.html` (the client's own
//! router decides), so `/groups/3` can be reloaded or shared.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// A build larger than this is refused at start-up: it is held in memory.
const MAX_TOTAL_BYTES: u64 = 64 * 1024 * 1024;

/// Paths that belong to the API: an unknown one answers the contract's 404 envelope, never the
/// client's page.
const API_PREFIXES: &[&str] = &[
    "/api",
    "/api-docs",
    "/swagger-ui",
    "/bbodok-websocket",
    "/health",
    "/ready",
    "/metrics",
];

/// Hashed file names (Vite's `assets/`) never change content: cached for a year. Everything else
/// (the page itself above all) is revalidated on every load, so a new build shows up at once.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

/// The page may talk to this origin and to the SFU's signalling (another port, or another host
/// behind the router), show camera streams, and load profile images from Kakao's CDN.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data: blob: https:; media-src 'self' blob: mediastream:; \
connect-src 'self' ws: wss: http: https:; worker-src 'self' blob:; object-src 'none'; \
base-uri 'self'; frame-ancestors 'none'";

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("reading the web client's files in {dir}: {source}")]
    Read {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} has no index.html (run `npm run build` in web/)")]
    NoIndex(PathBuf),
    #[error("the web client's files in {0} exceed {MAX_TOTAL_BYTES} bytes")]
    TooLarge(PathBuf),
}

struct Asset {
    body: web::Bytes,
    content_type: &'static str,
    etag: HeaderValue,
    cache_control: &'static str,
}

/// The client's build, by URL path (`/index.html`, `/assets/index-3f2a.js`).
pub struct WebAssets {
    files: HashMap<String, Asset>,
}

impl WebAssets {
    /// Loads `dir`. `Ok(None)` when the directory does not exist (the client is not built: the
    /// API runs without it, as in the tests).
    pub fn load(dir: &Path) -> Result<Option<Self>, WebError> {
        if !dir.is_dir() {
            return Ok(None);
        }
        let read_err = |source| WebError::Read {
            dir: dir.to_owned(),
            source,
        };
        let mut files = HashMap::new();
        let mut total = 0u64;
        let mut pending = vec![dir.to_owned()];
        while let Some(current) = pending.pop() {
            for entry in std::fs::read_dir(&current).map_err(read_err)? {
                let entry = entry.map_err(read_err)?;
                let kind = entry.file_type().map_err(read_err)?;
                let path = entry.path();
                if kind.is_dir() {
                    pending.push(path);
                    continue;
                }
                if !kind.is_file() {
                    continue;
                }
                let Some(url) = url_path(dir, &path) else {
                    continue;
                };
                let body = std::fs::read(&path).map_err(read_err)?;
                total += body.len() as u64;
                if total > MAX_TOTAL_BYTES {
                    return Err(WebError::TooLarge(dir.to_owned()));
                }
                let digest = Sha256::digest(&body);
                let etag = HeaderValue::from_str(&format!("\"{}\"", hex::encode(&digest[..12])))
                    .expect("hex is a valid header value");
                let cache_control = if url.starts_with("/assets/") {
                    IMMUTABLE
                } else {
                    REVALIDATE
                };
                files.insert(
                    url,
                    Asset {
                        content_type: content_type(&path),
                        body: body.into(),
                        etag,
                        cache_control,
                    },
                );
            }
        }
        if !files.contains_key("/index.html") {
            return Err(WebError::NoIndex(dir.to_owned()));
        }
        Ok(Some(Self { files }))
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    fn lookup(&self, path: &str) -> Option<&Asset> {
        if path == "/" {
            return self.files.get("/index.html");
        }
        if let Some(asset) = self.files.get(path) {
            return Some(asset);
        }
        // A client route (`/groups/3`), not a missing file (`/assets/gone.js`, `/favicon.ico`).
        let last = path.rsplit('/').next().unwrap_or_default();
        if last.contains('.') {
            None
        } else {
            self.files.get("/index.html")
        }
    }
}

/// `dir/assets/a.js` → `/assets/a.js`, for names that are plain UTF-8 path segments.
fn url_path(dir: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(dir).ok()?;
    let mut url = String::new();
    for part in relative.components() {
        let std::path::Component::Normal(part) = part else {
            return None;
        };
        url.push('/');
        url.push_str(part.to_str()?);
    }
    Some(url)
}

fn content_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
    {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

fn is_api_path(path: &str) -> bool {
    // Whole segments only: `/health` and `/health/x` are the API's, `/healthy-habits` is not.
    API_PREFIXES.iter().any(|p| {
        path.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// The API's fallback service when the client is built: its files and pages for GET/HEAD on
/// non-API paths, the contract's 404 for everything else.
pub async fn serve(
    req: HttpRequest,
    assets: web::Data<WebAssets>,
) -> Result<HttpResponse, ApiError> {
    let path = req.path();
    let method = req.method();
    if (method != Method::GET && method != Method::HEAD) || is_api_path(path) {
        return Err(ApiError::route_not_found());
    }
    let asset = assets.lookup(path).ok_or_else(ApiError::route_not_found)?;
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| {
            let ours = asset.etag.to_str().unwrap_or_default();
            tags.split(',').any(|t| t.trim() == ours || t.trim() == "*")
        });
    let mut res = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::ETAG, asset.etag.clone()))
        .insert_header((header::CACHE_CONTROL, asset.cache_control))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    if asset.content_type.starts_with("text/html") {
        res.insert_header((header::CONTENT_SECURITY_POLICY, CSP))
            .insert_header((header::REFERRER_POLICY, "same-origin"));
    }
    if fresh {
        return Ok(res.finish());
    }
    res.content_type(asset.content_type);
    Ok(if method == Method::HEAD {
        res.no_chunking(asset.body.len() as u64).finish()
    } else {
        res.body(asset.body.clone())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_paths_are_never_the_clients() {
        for p in [
            "/api/v1/nope",
            "/api-docs/openapi.json",
            "/health",
            "/ready",
            "/metrics",
            "/bbodok-websocket",
            "/swagger-ui/index.html",
        ] {
            assert!(is_api_path(p), "{p}");
        }
        for p in ["/", "/groups/3", "/healthy-habits", "/assets/a.js", "/apis"] {
            assert!(!is_api_path(p), "{p}");
        }
    }
}
