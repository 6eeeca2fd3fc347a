//! Parsing a `$batch` request body into operations and change sets.

use super::multipart;
use crate::error::ODataError;

/// Dataverse's cap on operations in one `$batch`.
pub const MAX_BATCH_REQUESTS: usize = 1000;

/// One operation of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRequest {
    /// Upper-cased HTTP method.
    pub method: String,
    /// The request target as sent: absolute URL, `/api/data/v9.2/...`, relative, or `$n/...`.
    pub url: String,
    /// Headers of the inner HTTP request, in order.
    pub headers: Vec<(String, String)>,
    /// The inner request body (trailing line breaks removed).
    pub body: Vec<u8>,
    /// `Content-ID` from the MIME part headers (or, failing that, the inner request headers).
    pub content_id: Option<String>,
}

impl BatchRequest {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A top-level part: a single operation or an atomic change set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchPart {
    /// An operation outside any change set.
    Request(BatchRequest),
    /// Operations to run atomically, in order.
    ChangeSet(Vec<BatchRequest>),
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn trim_trailing_newlines(mut body: &[u8]) -> &[u8] {
    while let [rest @ .., b'\r' | b'\n'] = body {
        body = rest;
    }
    body
}

/// Parses an `application/http` part: MIME headers, blank line, request line, headers, blank, body.
fn operation(part: &[u8]) -> Result<BatchRequest, ODataError> {
    let (mime_headers, http) = multipart::headers(part, true)?;
    if let Some(ct) = header(&mime_headers, "Content-Type")
        && multipart::media_type(ct) != "application/http"
    {
        return Err(ODataError::batch(format!(
            "The content type '{ct}' of a batch operation is not valid; it must be 'application/http'."
        )));
    }
    let Some((line, rest)) = multipart::first_line(http) else {
        return Err(ODataError::batch("A batch operation has no request line."));
    };
    let line = String::from_utf8_lossy(line).into_owned();
    let invalid_line = || {
        ODataError::batch(format!(
            "The request line '{line}' is invalid. The request line at the start of each operation must be of the format 'HttpMethod RequestUrl HttpVersion'."
        ))
    };
    let fields: Vec<&str> = line.split(' ').filter(|f| !f.is_empty()).collect();
    let [method, url, version] = fields.as_slice() else {
        return Err(invalid_line());
    };
    if !version.starts_with("HTTP/") || !method.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(invalid_line());
    }
    let (headers, body) = multipart::headers(rest, false)?;
    let content_id = header(&mime_headers, "Content-ID")
        .or_else(|| header(&headers, "Content-ID"))
        .map(str::to_owned);
    Ok(BatchRequest {
        method: method.to_ascii_uppercase(),
        url: (*url).to_owned(),
        headers,
        body: trim_trailing_newlines(body).to_vec(),
        content_id,
    })
}

fn too_many(count: usize, in_change_set: bool) -> Option<ODataError> {
    if count <= MAX_BATCH_REQUESTS {
        return None;
    }
    Some(ODataError::batch(if in_change_set {
        format!(
            "The current change set contains too many operations. A maximum number of '{MAX_BATCH_REQUESTS}' operations are allowed in a change set."
        )
    } else {
        format!(
            "The current batch message contains too many parts. A maximum number of '{MAX_BATCH_REQUESTS}' query operations and change sets are allowed."
        )
    }))
}

/// Parses a `$batch` request given its `Content-Type` header and body.
///
/// Errors (400): bad content type/boundary, missing closing boundary, malformed request lines or
/// headers, a `GET` or nested multipart inside a change set, more than [`MAX_BATCH_REQUESTS`] operations.
pub fn parse_batch(content_type: &str, body: &[u8]) -> Result<Vec<BatchPart>, ODataError> {
    let boundary = multipart::boundary(content_type)?;
    let mut parts = Vec::new();
    let mut total = 0usize;
    for raw in multipart::split(body, &boundary)? {
        let (mime_headers, content) = multipart::headers(raw, true)?;
        let inner_type = header(&mime_headers, "Content-Type").unwrap_or_default();
        if multipart::media_type(inner_type) != "multipart/mixed" {
            total += 1;
            if let Some(e) = too_many(total, false) {
                return Err(e);
            }
            parts.push(BatchPart::Request(operation(raw)?));
            continue;
        }
        let change_set_boundary = multipart::boundary(inner_type)?;
        let mut requests = Vec::new();
        for inner in multipart::split(content, &change_set_boundary)? {
            let (inner_headers, _) = multipart::headers(inner, true)?;
            if header(&inner_headers, "Content-Type")
                .is_some_and(|ct| multipart::media_type(ct) == "multipart/mixed")
            {
                return Err(ODataError::batch(
                    "Change sets cannot be nested inside other change sets.",
                ));
            }
            let request = operation(inner)?;
            if request.method == "GET" {
                return Err(ODataError::batch(
                    "An invalid HTTP method 'GET' was detected for a request in a change set. Requests in change sets only support the HTTP methods 'POST', 'PUT', 'DELETE', and 'PATCH'.",
                ));
            }
            total += 1;
            requests.push(request);
            if let Some(e) = too_many(requests.len(), true).or_else(|| too_many(total, false)) {
                return Err(e);
            }
        }
        parts.push(BatchPart::ChangeSet(requests));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &str,
        content_id: Option<&str>,
    ) -> BatchRequest {
        BatchRequest {
            method: method.into(),
            url: url.into(),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            body: body.as_bytes().to_vec(),
            content_id: content_id.map(str::to_owned),
        }
    }

    /// The documented Dataverse sample (CRLF, quoted boundary, relative/rooted/absolute targets).
    #[test]
    fn parses_the_documented_sample() {
        let body = [
            "--batch_AAA123",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            "",
            "GET accounts?$select=name&$top=2 HTTP/1.1",
            "Accept: application/json",
            "",
            "--batch_AAA123",
            "Content-Type: multipart/mixed; boundary=\"changeset_BBB456\"",
            "",
            "--changeset_BBB456",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            "Content-ID: 1",
            "",
            "POST /api/data/v9.2/tasks HTTP/1.1",
            "Content-Type: application/json; type=entry",
            "",
            "{\"subject\":\"Task 1\"}",
            "--changeset_BBB456",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            "Content-ID: 2",
            "",
            "PATCH $1 HTTP/1.1",
            "Content-Type: application/json",
            "",
            "{\"subject\":\"renamed\"}",
            "",
            "--changeset_BBB456--",
            "",
            "--batch_AAA123",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            "",
            "DELETE https://org.crm.dynamics.com/api/data/v9.2/tasks(5d2cc2a2-0f62-4ae3-9a1e-1b3c4d5e6f70) HTTP/1.1",
            "",
            "",
            "--batch_AAA123--",
            "",
        ]
        .join("\r\n");
        let parts = parse_batch(
            "multipart/mixed; boundary=\"batch_AAA123\"",
            body.as_bytes(),
        )
        .unwrap();
        assert_eq!(
            parts,
            vec![
                BatchPart::Request(req(
                    "GET",
                    "accounts?$select=name&$top=2",
                    &[("Accept", "application/json")],
                    "",
                    None
                )),
                BatchPart::ChangeSet(vec![
                    req(
                        "POST",
                        "/api/data/v9.2/tasks",
                        &[("Content-Type", "application/json; type=entry")],
                        "{\"subject\":\"Task 1\"}",
                        Some("1")
                    ),
                    req(
                        "PATCH",
                        "$1",
                        &[("Content-Type", "application/json")],
                        "{\"subject\":\"renamed\"}",
                        Some("2")
                    ),
                ]),
                BatchPart::Request(req(
                    "DELETE",
                    "https://org.crm.dynamics.com/api/data/v9.2/tasks(5d2cc2a2-0f62-4ae3-9a1e-1b3c4d5e6f70)",
                    &[],
                    "",
                    None
                )),
            ]
        );
        assert_eq!(
            match &parts[1] {
                BatchPart::ChangeSet(r) => r[0].header("content-type"),
                _ => None,
            },
            Some("application/json; type=entry")
        );
    }

    /// What dynamics-web-api's `convertToBatch` produces: LF only, leading blank line, unquoted boundary.
    #[test]
    fn parses_dynamics_web_api_output() {
        let body = [
            "",
            "--dwa_batch_1f0c",
            "Content-Type: multipart/mixed;boundary=changeset_77aa",
            "",
            "--changeset_77aa",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            "Content-ID: 100001",
            "",
            "POST http://127.0.0.1:5555/api/data/v9.2/contacts HTTP/1.1",
            "Content-Type: application/json",
            "Prefer: return=representation",
            "",
            "{\"firstname\":\"Ada\"}",
            "--changeset_77aa",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            "Content-ID: 100002",
            "",
            "PATCH http://127.0.0.1:5555/api/data/v9.2/accounts(5d2cc2a2-0f62-4ae3-9a1e-1b3c4d5e6f70) HTTP/1.1",
            "Content-Type: application/json",
            "If-Match: *",
            "",
            "{\"primarycontactid@odata.bind\":\"$100001\"}",
            "--changeset_77aa--",
            "",
            "--dwa_batch_1f0c",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            "",
            "GET http://127.0.0.1:5555/api/data/v9.2/WhoAmI() HTTP/1.1",
            "Accept: application/json",
            "",
            "--dwa_batch_1f0c--",
        ]
        .join("\n");
        let parts =
            parse_batch("multipart/mixed;boundary=dwa_batch_1f0c", body.as_bytes()).unwrap();
        let BatchPart::ChangeSet(cs) = &parts[0] else {
            panic!("expected a change set first: {parts:?}")
        };
        assert_eq!(cs.len(), 2);
        assert_eq!(cs[0].content_id.as_deref(), Some("100001"));
        assert_eq!(cs[0].header("Prefer"), Some("return=representation"));
        assert_eq!(cs[1].body, b"{\"primarycontactid@odata.bind\":\"$100001\"}");
        assert_eq!(cs[1].header("if-match"), Some("*"));
        let BatchPart::Request(get) = &parts[1] else {
            panic!("expected a request second")
        };
        assert_eq!(
            (get.method.as_str(), get.url.as_str()),
            ("GET", "http://127.0.0.1:5555/api/data/v9.2/WhoAmI()")
        );
        assert!(get.body.is_empty());
    }

    fn op(method: &str, url: &str) -> String {
        format!(
            "Content-Type: application/http\nContent-Transfer-Encoding: binary\n\n{method} {url} HTTP/1.1\n\n"
        )
    }

    #[test]
    fn rejects_invalid_batches() {
        let get_in_cs = format!(
            "--b\nContent-Type: multipart/mixed; boundary=c\n\n--c\n{}--c--\n--b--\n",
            op("GET", "accounts")
        );
        let nested = "--b\nContent-Type: multipart/mixed; boundary=c\n\n--c\nContent-Type: multipart/mixed; boundary=d\n\n--d--\n--c--\n--b--\n".to_owned();
        let bad_line = format!("--b\n{}--b--\n", op("POST", "accounts extra"));
        let no_version =
            "--b\nContent-Type: application/http\n\nGET accounts\n\n--b--\n".to_owned();
        let bad_header =
            "--b\nContent-Type: application/http\n\nGET accounts HTTP/1.1\nnot a header\n\n--b--\n"
                .to_owned();
        let wrong_type = "--b\nContent-Type: application/json\n\n{}\n--b--\n".to_owned();
        let unclosed = format!("--b\n{}", op("GET", "accounts"));
        let cases: Vec<(&str, &str, String)> = vec![
            (
                "multipart/mixed; boundary=b",
                "An invalid HTTP method 'GET' was detected",
                get_in_cs,
            ),
            (
                "multipart/mixed; boundary=b",
                "Change sets cannot be nested",
                nested,
            ),
            (
                "multipart/mixed; boundary=b",
                "The request line 'POST accounts extra HTTP/1.1' is invalid.",
                bad_line,
            ),
            (
                "multipart/mixed; boundary=b",
                "The request line 'GET accounts' is invalid.",
                no_version,
            ),
            (
                "multipart/mixed; boundary=b",
                "The header 'not a header' specified in the batch is not valid.",
                bad_header,
            ),
            (
                "multipart/mixed; boundary=b",
                "The content type 'application/json' of a batch operation",
                wrong_type,
            ),
            (
                "multipart/mixed; boundary=b",
                "The batch payload ended without the closing boundary '--b--'.",
                unclosed,
            ),
            (
                "application/json",
                "The content type 'application/json' is not a valid batch content type",
                String::new(),
            ),
        ];
        for (ct, message, body) in cases {
            let err = parse_batch(ct, body.as_bytes()).unwrap_err();
            assert!(
                err.message.starts_with(message),
                "{message} / got {}",
                err.message
            );
            assert_eq!((err.status, err.code.as_str()), (400, "0x80060888"));
        }
    }

    #[test]
    fn enforces_the_request_cap() {
        let batch = |n: usize| {
            let mut s = String::new();
            for _ in 0..n {
                s.push_str("--b\n");
                s.push_str(&op("GET", "WhoAmI()"));
            }
            s.push_str("--b--\n");
            s
        };
        assert_eq!(
            parse_batch(
                "multipart/mixed; boundary=b",
                batch(MAX_BATCH_REQUESTS).as_bytes()
            )
            .unwrap()
            .len(),
            1000
        );
        assert_eq!(
            parse_batch(
                "multipart/mixed; boundary=b",
                batch(MAX_BATCH_REQUESTS + 1).as_bytes()
            )
            .unwrap_err()
            .message,
            "The current batch message contains too many parts. A maximum number of '1000' query operations and change sets are allowed."
        );
        let mut cs = String::from("--b\nContent-Type: multipart/mixed; boundary=c\n\n");
        for _ in 0..=MAX_BATCH_REQUESTS {
            cs.push_str("--c\n");
            cs.push_str(&op("POST", "tasks"));
        }
        cs.push_str("--c--\n--b--\n");
        assert_eq!(
            parse_batch("multipart/mixed; boundary=b", cs.as_bytes())
                .unwrap_err()
                .message,
            "The current change set contains too many operations. A maximum number of '1000' operations are allowed in a change set."
        );
    }

    #[test]
    fn empty_batch_and_binary_bodies() {
        assert_eq!(
            parse_batch("multipart/mixed; boundary=b", b"--b--\r\n").unwrap(),
            vec![]
        );
        let body = b"--b\r\nContent-Type: application/http\r\n\r\nPOST tasks HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{\"x\":\"\xc3\xa9\"}\r\n--b--";
        let parts = parse_batch("multipart/mixed; boundary=b", body).unwrap();
        let BatchPart::Request(r) = &parts[0] else {
            panic!("request expected")
        };
        assert_eq!(r.body, "{\"x\":\"é\"}".as_bytes());
    }
}
