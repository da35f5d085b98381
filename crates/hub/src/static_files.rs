//! A folder served at `/` (`hubbub hub --static DIR`), so a page and the hub share an origin.
//!
//! GET and HEAD only; `index.html` for a directory; paths with `..`, backslashes or NUL are
//! refused; the content type comes from the extension. Files are read whole (pages, scripts,
//! styles), up to 16 MiB.

use std::path::{Component, Path, PathBuf};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};

const MAX_FILE: u64 = 16 << 20;

fn content_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("ico") => "image/x-icon",
        Some("wasm") => "application/wasm",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// The file a URL path names under `root`, or `None` for one that would leave it.
fn resolve(root: &Path, url_path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(url_path)?;
    if decoded.contains('\\') || decoded.contains('\0') {
        return None;
    }
    let mut path = root.to_path_buf();
    for component in Path::new(decoded.trim_start_matches('/')).components() {
        match component {
            Component::Normal(part) => path.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(path)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

async fn serve(root: PathBuf, request: Request<Body>) -> Response {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let Some(mut path) = resolve(&root, request.uri().path()) else {
        return (StatusCode::BAD_REQUEST, "Bad path").into_response();
    };
    // Blocking file reads run off the async workers.
    let read = tokio::task::spawn_blocking(move || -> Result<(PathBuf, Vec<u8>), StatusCode> {
        if std::fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
            path.push("index.html");
        }
        let meta = std::fs::metadata(&path)
            .ok()
            .filter(|m| m.is_file())
            .ok_or(StatusCode::NOT_FOUND)?;
        if meta.len() > MAX_FILE {
            return Err(StatusCode::PAYLOAD_TOO_LARGE);
        }
        let bytes = std::fs::read(&path).map_err(|_| StatusCode::NOT_FOUND)?;
        Ok((path, bytes))
    })
    .await;
    match read {
        Ok(Ok((path, bytes))) => (
            [
                (header::CONTENT_TYPE, content_type(&path)),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            bytes,
        )
            .into_response(),
        Ok(Err(status)) => (status, status.canonical_reason().unwrap_or("")).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The service that serves `root`.
pub(crate) fn service(root: PathBuf) -> axum::routing::MethodRouter {
    axum::routing::any(move |request: Request<Body>| serve(root.clone(), request))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_root() {
        let root = Path::new("/srv/site");
        assert_eq!(
            resolve(root, "/a/b.js"),
            Some(PathBuf::from("/srv/site/a/b.js"))
        );
        assert_eq!(resolve(root, "/"), Some(PathBuf::from("/srv/site")));
        assert_eq!(resolve(root, "/a/../../etc/passwd"), None);
        assert_eq!(resolve(root, "/%2e%2e/etc/passwd"), None);
        assert_eq!(resolve(root, "/a%5cb"), None);
        assert_eq!(resolve(root, "/a%zz"), None);
        assert_eq!(
            content_type(Path::new("x.JS")),
            "text/javascript; charset=utf-8"
        );
    }
}
