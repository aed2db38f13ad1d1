//! Response headers that make serving user uploads safe: a browser must never run uploaded
//! content as part of our origin.

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// Types a browser may show inline; everything else is offered as a download. (Synapse's list.)
const INLINE_TYPES: &[&str] = &[
    "text/css",
    "text/plain",
    "text/csv",
    "application/json",
    "application/ld+json",
    "image/jpeg",
    "image/gif",
    "image/png",
    "image/apng",
    "image/webp",
    "image/avif",
    "video/mp4",
    "video/webm",
    "video/ogg",
    "video/quicktime",
    "audio/mp4",
    "audio/webm",
    "audio/aac",
    "audio/mpeg",
    "audio/ogg",
    "audio/wave",
    "audio/wav",
    "audio/x-wav",
    "audio/x-pn-wav",
    "audio/flac",
    "audio/x-flac",
];

fn is_inline(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    INLINE_TYPES.contains(&essence.as_str())
}

/// `Content-Disposition` with the filename, RFC 6266 style: a plain `filename` when it is
/// printable ASCII without quotes, otherwise `filename*` with UTF-8 percent-encoding.
pub fn content_disposition(content_type: &str, filename: Option<&str>) -> String {
    let kind = if is_inline(content_type) { "inline" } else { "attachment" };
    let Some(name) = filename.filter(|n| !n.is_empty()) else { return kind.to_owned() };
    let plain = name.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
    if plain {
        format!("{kind}; filename=\"{name}\"")
    } else {
        let encoded: String = name
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        format!("{kind}; filename*=utf-8''{encoded}")
    }
}

/// The headers every media response carries.
pub fn safe_media_headers(headers: &mut HeaderMap, content_type: &str, filename: Option<&str>) {
    let content_type =
        HeaderValue::from_str(content_type).unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    headers.insert(http::header::CONTENT_TYPE, content_type);
    if let Ok(disposition) = HeaderValue::from_str(&content_disposition(
        headers[http::header::CONTENT_TYPE].to_str().unwrap_or(""),
        filename,
    )) {
        headers.insert(http::header::CONTENT_DISPOSITION, disposition);
    }
    headers.insert(
        http::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; media-src 'self'; object-src 'self';"),
    );
    headers.insert(http::header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(HeaderName::from_static("cross-origin-resource-policy"), HeaderValue::from_static("cross-origin"));
    headers.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=86400, immutable"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_only_for_safe_types() {
        assert_eq!(content_disposition("image/png", Some("cat.png")), "inline; filename=\"cat.png\"");
        assert_eq!(content_disposition("text/html", Some("x.html")), "attachment; filename=\"x.html\"");
        assert_eq!(content_disposition("image/svg+xml", None), "attachment");
        assert_eq!(content_disposition("TEXT/PLAIN; charset=utf-8", None), "inline");
    }

    #[test]
    fn unusual_filenames_are_percent_encoded() {
        assert_eq!(
            content_disposition("image/png", Some("chat ☕.png")),
            "inline; filename*=utf-8''chat%20%E2%98%95.png"
        );
        assert_eq!(content_disposition("image/png", Some("a\"b")), "inline; filename*=utf-8''a%22b");
    }
}
