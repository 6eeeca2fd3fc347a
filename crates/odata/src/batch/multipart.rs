//! MIME multipart framing on bytes: boundary extraction, splitting into parts, part headers.
//! Accepts CRLF or LF line endings, quoted or unquoted boundaries, preambles and epilogues.

use crate::error::ODataError;

/// Splits `s` on `;` outside double quotes.
fn split_params(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// The media type (lowercase, without parameters) of a `Content-Type` value.
pub(crate) fn media_type(content_type: &str) -> String {
    split_params(content_type)
        .first()
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// The `boundary` parameter of a `multipart/mixed` content type, unquoted.
pub(crate) fn boundary(content_type: &str) -> Result<String, ODataError> {
    let invalid = || {
        ODataError::batch(format!(
            "The content type '{content_type}' is not a valid batch content type; it must be 'multipart/mixed' with exactly one 'boundary' parameter."
        ))
    };
    let params = split_params(content_type);
    if media_type(content_type) != "multipart/mixed" {
        return Err(invalid());
    }
    let boundaries: Vec<String> = params[1..]
        .iter()
        .filter_map(|p| p.split_once('='))
        .filter(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| {
            let v = v.trim();
            v.strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .unwrap_or(v)
                .to_owned()
        })
        .collect();
    match boundaries.as_slice() {
        [b] if !b.is_empty() && b.len() <= 70 => Ok(b.clone()),
        _ => Err(invalid()),
    }
}

/// Byte ranges of the lines of `body`: (start, end without line break, start of next line).
fn lines(body: &[u8]) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
    let mut pos = 0;
    std::iter::from_fn(move || {
        if pos > body.len() || (pos == body.len() && pos != 0) {
            return None;
        }
        let start = pos;
        let (end, next) = match body[start..].iter().position(|b| *b == b'\n') {
            Some(i) => (start + i, start + i + 1),
            None => (body.len(), body.len() + 1),
        };
        pos = next;
        let end = if end > start && body[end - 1] == b'\r' {
            end - 1
        } else {
            end
        };
        Some((start, end, next.min(body.len())))
    })
}

fn trim_end_ws(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && (line[end - 1] == b' ' || line[end - 1] == b'\t') {
        end -= 1;
    }
    &line[..end]
}

/// The body parts between `--boundary` delimiters; the line break before a delimiter belongs to it.
pub(crate) fn split<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<&'a [u8]>, ODataError> {
    let delimiter = format!("--{boundary}");
    let close = format!("--{boundary}--");
    let mut parts = Vec::new();
    let mut current: Option<usize> = None;
    for (start, end, next) in lines(body) {
        let line = trim_end_ws(&body[start..end]);
        let is_close = line == close.as_bytes();
        if !is_close && line != delimiter.as_bytes() {
            continue;
        }
        if let Some(s) = current {
            let mut e = start;
            if e > s && body[e - 1] == b'\n' {
                e -= 1;
                if e > s && body[e - 1] == b'\r' {
                    e -= 1;
                }
            }
            parts.push(&body[s..e]);
        }
        if is_close {
            return Ok(parts);
        }
        current = Some(next);
    }
    Err(ODataError::batch(format!(
        "The batch payload ended without the closing boundary '{close}'."
    )))
}

/// Header name/value pairs in order.
pub(crate) type Headers = Vec<(String, String)>;

/// Reads header lines up to the first empty line; returns the headers and the rest after it.
/// Leading empty lines are skipped first when `skip_leading_blank` is set.
pub(crate) fn headers(
    part: &[u8],
    skip_leading_blank: bool,
) -> Result<(Headers, &[u8]), ODataError> {
    let mut out = Vec::new();
    let mut seen_content = !skip_leading_blank;
    for (start, end, next) in lines(part) {
        let line = &part[start..end];
        if line.is_empty() {
            if seen_content {
                return Ok((out, &part[next..]));
            }
            continue;
        }
        if !seen_content {
            // The first non-blank line is not a header: no MIME headers at all.
            seen_content = true;
        }
        let text = std::str::from_utf8(line).map_err(|_| {
            ODataError::batch("The batch payload contains a header that is not valid UTF-8.")
        })?;
        let Some((name, value)) = text.split_once(':') else {
            return Err(ODataError::batch(format!(
                "The header '{text}' specified in the batch is not valid."
            )));
        };
        out.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    Ok((out, &part[part.len()..]))
}

/// First non-empty line and the rest (for the HTTP request line of an operation).
pub(crate) fn first_line(part: &[u8]) -> Option<(&[u8], &[u8])> {
    lines(part)
        .find(|(s, e, _)| e > s)
        .map(|(s, e, next)| (&part[s..e], &part[next..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries() {
        let ok = [
            ("multipart/mixed; boundary=\"batch_x\"", "batch_x"),
            ("multipart/mixed;boundary=dwa_batch_1", "dwa_batch_1"),
            ("Multipart/Mixed; charset=utf-8; BOUNDARY=b", "b"),
        ];
        for (ct, b) in ok {
            assert_eq!(boundary(ct).unwrap(), b, "{ct}");
        }
        for ct in [
            "application/json",
            "multipart/mixed",
            "multipart/mixed; boundary=",
            "multipart/mixed; boundary=a; boundary=b",
            "",
        ] {
            assert!(boundary(ct).is_err(), "{ct}");
        }
    }

    #[test]
    fn splits_with_preamble_and_either_line_ending() {
        for eol in ["\r\n", "\n"] {
            let body = [
                "", "--b", "A: 1", "", "one", "--b  ", "", "two", "--b--", "epilogue",
            ]
            .join(eol);
            let parts = split(body.as_bytes(), "b").unwrap();
            assert_eq!(
                parts,
                [
                    format!("A: 1{eol}{eol}one").as_bytes(),
                    format!("{eol}two").as_bytes()
                ]
            );
        }
        assert!(split(b"--b\nx\n", "b").is_err());
        assert_eq!(split(b"--b--", "b").unwrap(), Vec::<&[u8]>::new());
        // A line merely starting with the delimiter is content.
        assert_eq!(
            split(b"--b\n--bx\n--b--\n", "b").unwrap(),
            [b"--bx".as_slice()]
        );
    }

    #[test]
    fn reads_headers() {
        let (h, rest) = headers(
            b"Content-Type: application/http\r\nContent-ID: 1\r\n\r\nGET x HTTP/1.1\r\n",
            false,
        )
        .unwrap();
        assert_eq!(
            h,
            [
                ("Content-Type".to_owned(), "application/http".to_owned()),
                ("Content-ID".to_owned(), "1".to_owned())
            ]
        );
        assert_eq!(rest, b"GET x HTTP/1.1\r\n");
        assert!(headers(b"no colon here\n\n", false).is_err());
        let (h, rest) = headers(b"\n\nA: b\n\nbody", true).unwrap();
        assert_eq!((h.len(), rest), (1, b"body".as_slice()));
    }
}
