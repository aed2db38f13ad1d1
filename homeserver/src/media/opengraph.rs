//! The OpenGraph tags of an HTML page (`<meta property="og:…" content="…">`), with `<title>`
//! and `<meta name="description">` as fallbacks. A tolerant scanner, not an HTML parser: pages
//! are untrusted and often malformed, and these few tags are all a preview needs.

use std::collections::BTreeMap;

/// The most `og:` properties kept, and the longest value (in characters).
const MAX_PROPERTIES: usize = 50;
const MAX_VALUE_CHARS: usize = 2000;

pub fn parse(html: &str) -> BTreeMap<String, String> {
    // ASCII lowercasing keeps byte offsets, so positions found in `lower` index `html` too.
    let lower = html.to_ascii_lowercase();
    let mut og = BTreeMap::new();
    let mut title = None;
    let mut description = None;
    let mut at = 0;
    while let Some(offset) = lower[at..].find('<') {
        let start = at + offset;
        let rest = &lower[start..];
        if rest.starts_with("<!--") {
            at = lower[start..].find("-->").map_or(lower.len(), |end| start + end + 3);
            continue;
        }
        let Some(end) = rest.find('>').map(|end| start + end) else { break };
        if let Some(skip) = ["<script", "<style"].iter().find(|tag| is_tag(rest, tag)) {
            // Their contents are not markup; skip to the closing tag.
            let close = format!("</{}", &skip[1..]);
            at = lower[end..].find(&close).map_or(lower.len(), |close_at| end + close_at);
            continue;
        }
        if is_tag(rest, "<meta") {
            let attributes = attributes(&html[start + 5..end]);
            let find = |name: &str| attributes.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
            let key = find("property").or_else(|| find("name")).map(str::to_ascii_lowercase);
            if let (Some(key), Some(content)) = (key, find("content")) {
                if key.starts_with("og:") && og.len() < MAX_PROPERTIES {
                    og.entry(key).or_insert_with(|| clean(content));
                } else if key == "description" && description.is_none() {
                    description = Some(clean(content));
                }
            }
        } else if is_tag(rest, "<title") && title.is_none() {
            let text_end = lower[end..].find("</title").map_or(lower.len(), |close| end + close);
            title = Some(clean(&decode_entities(&html[end + 1..text_end.max(end + 1)])));
            at = text_end;
            continue;
        }
        at = end + 1;
    }
    if let Some(title) = title.filter(|t| !t.is_empty()) {
        og.entry("og:title".to_owned()).or_insert(title);
    }
    if let Some(description) = description.filter(|d| !d.is_empty()) {
        og.entry("og:description".to_owned()).or_insert(description);
    }
    og
}

/// Whether `rest` starts with the tag `tag` (and not a longer name such as `<metadata`).
fn is_tag(rest: &str, tag: &str) -> bool {
    rest.starts_with(tag) && rest[tag.len()..].starts_with(|c: char| c.is_ascii_whitespace() || c == '>' || c == '/')
}

/// The attributes of a tag's inside, names lowercased and values decoded.
fn attributes(inside: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = inside.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() || c == '/' {
            chars.next();
            continue;
        }
        let mut name_end = start;
        while let Some(&(i, c)) = chars.peek() {
            if c.is_whitespace() || c == '=' || c == '/' {
                break;
            }
            name_end = i + c.len_utf8();
            chars.next();
        }
        let name = inside[start..name_end].to_ascii_lowercase();
        while chars.peek().is_some_and(|&(_, c)| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek().is_some_and(|&(_, c)| c == '=') {
            chars.next();
            while chars.peek().is_some_and(|&(_, c)| c.is_whitespace()) {
                chars.next();
            }
            let quote = chars.peek().map(|&(_, c)| c).filter(|c| *c == '"' || *c == '\'');
            if quote.is_some() {
                chars.next();
            }
            for (_, c) in chars.by_ref() {
                if Some(c) == quote || (quote.is_none() && c.is_whitespace()) {
                    break;
                }
                value.push(c);
            }
        }
        if name.is_empty() {
            chars.next();
        } else {
            out.push((name, decode_entities(&value)));
        }
    }
    out
}

/// The common character references: named ones pages use in titles, and numeric ones.
fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let entity = rest.find(';').filter(|end| *end <= 10).map(|end| &rest[1..end]);
        let decoded = entity.and_then(|name| match name {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some(' '),
            _ => {
                let number = name.strip_prefix('#')?;
                let code = match number.strip_prefix(['x', 'X']) {
                    Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                    None => number.parse().ok()?,
                };
                char::from_u32(code)
            }
        });
        match (decoded, entity) {
            (Some(c), Some(name)) => {
                out.push(c);
                rest = &rest[name.len() + 2..];
            }
            _ => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Whitespace collapsed, length bounded.
fn clean(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(MAX_VALUE_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_opengraph_tags() {
        let page = r#"<!doctype html><html><head>
            <title>Fallback</title>
            <META property="og:title" content="The &amp; Title">
            <meta content='Two
              lines' property=og:description />
            <meta property="og:image" content="/img/cat.png">
            <meta property="og:title" content="second title is ignored">
            <!-- <meta property="og:type" content="commented out"> -->
            <script>var s = '<meta property="og:url" content="in a script">';</script>
            <metadata property="og:site_name" content="not a meta tag">
        </head></html>"#;
        let og = parse(page);
        assert_eq!(og["og:title"], "The & Title");
        assert_eq!(og["og:description"], "Two lines");
        assert_eq!(og["og:image"], "/img/cat.png");
        assert_eq!(og.len(), 3, "{og:?}");
    }

    #[test]
    fn falls_back_to_title_and_description() {
        let og = parse("<title> Caf&#233; &#x2615;\n menu </title><meta name=\"Description\" content=\"Open daily\">");
        assert_eq!(og["og:title"], "Café ☕ menu");
        assert_eq!(og["og:description"], "Open daily");
    }

    #[test]
    fn survives_garbage() {
        for page in ["", "<", "<meta", "<title>never closed", "<meta content=\"x", "&#xffffffff; &unknown; &", "<<<>>>"]
        {
            let _ = parse(page);
        }
        assert!(parse("<meta property=\"og:title\">").is_empty());
    }
}
