//! The `multipart/mixed` bodies of federation media responses (spec v1.11): a JSON metadata
//! part, then a part with the content or a `Location` header saying where to fetch it.
//!
//! [`MediaPartReader`] is fed the body chunk by chunk and hands the content on as it arrives,
//! so a large file never has to be held in memory (ruma's parser needs the whole body).

/// How much of the body may come before the content itself (boundaries, headers, metadata).
const MAX_HEAD_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MultipartError {
    #[error("not multipart/mixed with a boundary")]
    NotMultipart,
    #[error("the parts before the content are malformed or too long")]
    MalformedHead,
    #[error("the metadata part is not a JSON object")]
    BadMetadata,
    #[error("the body ended before its closing boundary")]
    Truncated,
}

/// The second part's headers: the content's description, or where the content is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaPart {
    File { content_type: Option<String>, content_disposition: Option<String> },
    Location(String),
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Head,
    Content,
    Done,
}

pub struct MediaPartReader {
    /// `\r\n--boundary`: what ends every part.
    delimiter: Vec<u8>,
    buf: Vec<u8>,
    state: State,
}

/// The boundary of a `multipart/mixed` content type.
fn boundary_of(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    if !params.next()?.trim().eq_ignore_ascii_case("multipart/mixed") {
        return None;
    }
    params.find_map(|param| {
        let (name, value) = param.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let value = value.trim().trim_matches('"');
        (!value.is_empty() && value.len() <= 200).then(|| value.to_owned())
    })
}

impl MediaPartReader {
    /// A reader for a body with this `Content-Type` header.
    pub fn new(content_type: &str) -> Result<Self, MultipartError> {
        let boundary = boundary_of(content_type).ok_or(MultipartError::NotMultipart)?;
        // The body may start with the boundary line itself (no preamble, no CRLF before it): a
        // leading CRLF makes that case like every other delimiter.
        Ok(Self { delimiter: format!("\r\n--{boundary}").into_bytes(), buf: b"\r\n".to_vec(), state: State::Head })
    }

    /// Feeds the next chunk of the body. Content bytes are appended to `content`; the second
    /// part's headers are returned once, as soon as they are complete.
    pub fn feed(&mut self, chunk: &[u8], content: &mut Vec<u8>) -> Result<Option<MediaPart>, MultipartError> {
        match self.state {
            State::Done => Ok(None),
            State::Content => {
                self.buf.extend_from_slice(chunk);
                self.drain_content(content);
                Ok(None)
            }
            State::Head => {
                self.buf.extend_from_slice(chunk);
                let Some((part, consumed)) = self.parse_head()? else {
                    if self.buf.len() > MAX_HEAD_BYTES {
                        return Err(MultipartError::MalformedHead);
                    }
                    return Ok(None);
                };
                self.buf.drain(..consumed);
                self.state = State::Content;
                self.drain_content(content);
                Ok(Some(part))
            }
        }
    }

    /// Whether the closing delimiter was seen: the rest of the body need not be read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Checks that the body was complete.
    pub fn finish(&self) -> Result<(), MultipartError> {
        if self.state == State::Done { Ok(()) } else { Err(MultipartError::Truncated) }
    }

    /// Moves content to `content`, keeping back what could be the start of the delimiter.
    fn drain_content(&mut self, content: &mut Vec<u8>) {
        if let Some(end) = memchr::memmem::find(&self.buf, &self.delimiter) {
            content.extend_from_slice(&self.buf[..end]);
            self.buf = Vec::new();
            self.state = State::Done;
            return;
        }
        let keep = self.delimiter.len() - 1;
        if self.buf.len() > keep {
            let emit = self.buf.len() - keep;
            content.extend_from_slice(&self.buf[..emit]);
            self.buf.drain(..emit);
        }
    }

    /// The second part's headers and how many bytes of `buf` precede its content, once complete.
    fn parse_head(&self) -> Result<Option<(MediaPart, usize)>, MultipartError> {
        let buf = &self.buf;
        let Some(first) = memchr::memmem::find(buf, &self.delimiter) else { return Ok(None) };
        let Some(metadata_start) = part_body_start(buf, first + self.delimiter.len()) else { return Ok(None) };
        let Some(metadata_len) = memchr::memmem::find(&buf[metadata_start..], &self.delimiter) else {
            return Ok(None);
        };
        let metadata = &buf[metadata_start..metadata_start + metadata_len];
        let is_object = serde_json::from_slice::<serde_json::Value>(metadata).is_ok_and(|v| v.is_object());
        if !is_object {
            return Err(MultipartError::BadMetadata);
        }
        let headers_start = metadata_start + metadata_len + self.delimiter.len();
        let Some(content_start) = part_body_start(buf, headers_start) else { return Ok(None) };
        let headers =
            std::str::from_utf8(&buf[headers_start..content_start]).map_err(|_| MultipartError::MalformedHead)?;
        Ok(Some((media_part(headers), content_start)))
    }
}

/// Where a part's body starts: after the rest of the delimiter line and the headers' blank line.
fn part_body_start(buf: &[u8], from: usize) -> Option<usize> {
    let mut line_start = from + memchr::memchr(b'\n', buf.get(from..)?)? + 1;
    loop {
        let line_end = line_start + memchr::memchr(b'\n', &buf[line_start..])? + 1;
        if matches!(&buf[line_start..line_end], b"\r\n" | b"\n") {
            return Some(line_end);
        }
        line_start = line_end;
    }
}

fn media_part(headers: &str) -> MediaPart {
    let mut content_type = None;
    let mut content_disposition = None;
    for line in headers.lines() {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim().to_owned();
        match name.trim().to_ascii_lowercase().as_str() {
            "location" => return MediaPart::Location(value),
            "content-type" => content_type = Some(value),
            "content-disposition" => content_disposition = Some(value),
            _ => {}
        }
    }
    MediaPart::File { content_type, content_disposition }
}

/// The body of a media response carrying the content itself, without the content bytes: what
/// goes before them and what goes after.
pub fn media_body_frame(boundary: &str, content_type: &str, content_disposition: &str) -> (String, String) {
    let head = format!(
        "\r\n--{boundary}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--{boundary}\r\n\
         Content-Type: {content_type}\r\nContent-Disposition: {content_disposition}\r\n\r\n"
    );
    (head, format!("\r\n--{boundary}--\r\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_in_chunks(content_type: &str, body: &[u8], size: usize) -> Result<(MediaPart, Vec<u8>), MultipartError> {
        let mut reader = MediaPartReader::new(content_type)?;
        let mut content = Vec::new();
        let mut part = None;
        for chunk in body.chunks(size) {
            if let Some(p) = reader.feed(chunk, &mut content)? {
                part = Some(p);
            }
        }
        reader.finish()?;
        Ok((part.ok_or(MultipartError::Truncated)?, content))
    }

    #[test]
    fn reads_our_own_frame_in_any_chunking() {
        let bytes: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let (head, tail) = media_body_frame("abc123", "image/png", "inline; filename=\"a.png\"");
        let body = [head.as_bytes(), &bytes, tail.as_bytes()].concat();
        for size in [1, 7, 64, 100_000] {
            let (part, content) = read_in_chunks("multipart/mixed; boundary=abc123", &body, size).unwrap();
            assert_eq!(
                part,
                MediaPart::File {
                    content_type: Some("image/png".into()),
                    content_disposition: Some("inline; filename=\"a.png\"".into())
                }
            );
            assert_eq!(content, bytes, "chunk size {size}");
        }
    }

    #[test]
    fn reads_a_location_part_and_a_body_without_leading_crlf() {
        let body = b"--b0\r\nContent-Type: application/json\r\n\r\n{}\r\n--b0\r\nLocation: https://cdn.example/x\r\n\r\n\r\n--b0--";
        let (part, content) = read_in_chunks("Multipart/Mixed; boundary=\"b0\"", body, 5).unwrap();
        assert_eq!(part, MediaPart::Location("https://cdn.example/x".into()));
        assert!(content.is_empty());
    }

    #[test]
    fn refuses_malformed_bodies() {
        assert_eq!(MediaPartReader::new("application/json").err(), Some(MultipartError::NotMultipart));
        let bad_metadata = b"\r\n--b\r\n\r\nnot json\r\n--b\r\n\r\nxx\r\n--b--";
        assert_eq!(
            read_in_chunks("multipart/mixed; boundary=b", bad_metadata, 3).err(),
            Some(MultipartError::BadMetadata)
        );
        let truncated = b"\r\n--b\r\n\r\n{}\r\n--b\r\n\r\nxxxx";
        assert_eq!(read_in_chunks("multipart/mixed; boundary=b", truncated, 3).err(), Some(MultipartError::Truncated));
        let endless = vec![b'a'; MAX_HEAD_BYTES + 10];
        assert_eq!(
            read_in_chunks("multipart/mixed; boundary=b", &endless, 1000).err(),
            Some(MultipartError::MalformedHead)
        );
    }
}
