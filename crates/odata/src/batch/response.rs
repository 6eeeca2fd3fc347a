//! Rendering a `$batch` response exactly as Dataverse frames it (and as dynamics-web-api parses it):
//! the body starts with `--batchresponse_<uuid>` (no preamble), CRLF line endings, change sets as one part
//! holding a nested `changesetresponse_<uuid>` multipart whose parts echo `Content-ID`.

use uuid::Uuid;

/// One inner response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchResponse {
    /// HTTP status.
    pub status: u16,
    /// Inner response headers, in order (e.g. `OData-Version`, `Location`, `OData-EntityId`, `Content-Type`).
    pub headers: Vec<(String, String)>,
    /// Inner body (JSON, plain text or empty).
    pub body: Vec<u8>,
    /// The request's Content-ID, echoed in change set parts.
    pub content_id: Option<String>,
}

/// The reason phrase Dataverse writes after the status code.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// Accumulates response parts and renders the body.
#[derive(Debug, Clone)]
pub struct BatchResponseWriter {
    boundary: String,
    body: Vec<u8>,
}

impl Default for BatchResponseWriter {
    fn default() -> Self {
        Self::new()
    }
}

fn write_part(out: &mut Vec<u8>, boundary: &str, response: &BatchResponse, with_content_id: bool) {
    out.extend_from_slice(format!("--{boundary}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n").as_bytes());
    if with_content_id && let Some(id) = &response.content_id {
        out.extend_from_slice(format!("Content-ID: {id}\r\n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "\r\nHTTP/1.1 {} {}\r\n",
            response.status,
            reason_phrase(response.status)
        )
        .as_bytes(),
    );
    for (name, value) in &response.headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&response.body);
    out.extend_from_slice(b"\r\n");
}

impl BatchResponseWriter {
    /// A writer with a fresh `batchresponse_<uuid>` boundary.
    pub fn new() -> Self {
        Self::with_boundary(format!("batchresponse_{}", Uuid::new_v4()))
    }

    /// A writer with a chosen boundary (deterministic output for tests).
    pub fn with_boundary(boundary: impl Into<String>) -> Self {
        Self {
            boundary: boundary.into(),
            body: Vec::new(),
        }
    }

    /// The outer `Content-Type` header value.
    pub fn content_type(&self) -> String {
        format!("multipart/mixed; boundary={}", self.boundary)
    }

    /// Appends a response to an operation outside any change set.
    pub fn add_response(&mut self, response: &BatchResponse) {
        write_part(&mut self.body, &self.boundary, response, false);
    }

    /// Appends a change set's responses as one part with a fresh `changesetresponse_<uuid>` boundary.
    pub fn add_change_set(&mut self, responses: &[BatchResponse]) {
        self.add_change_set_with_boundary(
            &format!("changesetresponse_{}", Uuid::new_v4()),
            responses,
        );
    }

    /// [`Self::add_change_set`] with a chosen inner boundary.
    pub fn add_change_set_with_boundary(&mut self, boundary: &str, responses: &[BatchResponse]) {
        self.body.extend_from_slice(
            format!(
                "--{}\r\nContent-Type: multipart/mixed; boundary={boundary}\r\n\r\n",
                self.boundary
            )
            .as_bytes(),
        );
        for r in responses {
            write_part(&mut self.body, boundary, r, true);
        }
        self.body
            .extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    }

    /// The complete body, closed with `--batchresponse_<uuid>--`.
    pub fn finish(mut self) -> Vec<u8> {
        self.body
            .extend_from_slice(format!("--{}--\r\n", self.boundary).as_bytes());
        self.body
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchPart, parse_batch};

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn sample() -> (String, Vec<u8>) {
        let mut w = BatchResponseWriter::with_boundary("batchresponse_b1");
        let ct = w.content_type();
        w.add_response(&BatchResponse {
            status: 200,
            headers: h(&[
                (
                    "Content-Type",
                    "application/json; odata.metadata=minimal; odata.streaming=true",
                ),
                ("OData-Version", "4.0"),
            ]),
            body: b"{\"value\":[]}".to_vec(),
            content_id: None,
        });
        w.add_change_set_with_boundary(
            "changesetresponse_c1",
            &[
                BatchResponse {
                    status: 204,
                    headers: h(&[
                        ("OData-Version", "4.0"),
                        ("Location", "http://h/api/data/v9.2/tasks(1)"),
                        ("OData-EntityId", "http://h/api/data/v9.2/tasks(1)"),
                    ]),
                    body: vec![],
                    content_id: Some("1".into()),
                },
                BatchResponse {
                    status: 204,
                    headers: h(&[("OData-Version", "4.0")]),
                    body: vec![],
                    content_id: Some("2".into()),
                },
            ],
        );
        w.add_response(&BatchResponse {
            status: 404,
            headers: h(&[
                ("Content-Type", "application/json; odata.metadata=minimal"),
                ("OData-Version", "4.0"),
            ]),
            body: b"{\"error\":{\"code\":\"0x80040217\",\"message\":\"x\"}}".to_vec(),
            content_id: None,
        });
        (ct, w.finish())
    }

    #[test]
    fn renders_the_exact_framing() {
        let (ct, body) = sample();
        assert_eq!(ct, "multipart/mixed; boundary=batchresponse_b1");
        let expected = [
            "--batchresponse_b1",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            "",
            "HTTP/1.1 200 OK",
            "Content-Type: application/json; odata.metadata=minimal; odata.streaming=true",
            "OData-Version: 4.0",
            "",
            "{\"value\":[]}",
            "--batchresponse_b1",
            "Content-Type: multipart/mixed; boundary=changesetresponse_c1",
            "",
            "--changesetresponse_c1",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            "Content-ID: 1",
            "",
            "HTTP/1.1 204 No Content",
            "OData-Version: 4.0",
            "Location: http://h/api/data/v9.2/tasks(1)",
            "OData-EntityId: http://h/api/data/v9.2/tasks(1)",
            "",
            "",
            "--changesetresponse_c1",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            "Content-ID: 2",
            "",
            "HTTP/1.1 204 No Content",
            "OData-Version: 4.0",
            "",
            "",
            "--changesetresponse_c1--",
            "--batchresponse_b1",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            "",
            "HTTP/1.1 404 Not Found",
            "Content-Type: application/json; odata.metadata=minimal",
            "OData-Version: 4.0",
            "",
            "{\"error\":{\"code\":\"0x80040217\",\"message\":\"x\"}}",
            "--batchresponse_b1--",
            "",
        ]
        .join("\r\n");
        assert_eq!(String::from_utf8(body).unwrap(), expected);
    }

    /// Re-implements dynamics-web-api's `parseBatchResponse` algorithm (split on the first line, change
    /// sets: trim, drop one header line, recurse) and checks it recovers every status and payload.
    #[test]
    fn dynamics_web_api_parser_reads_it() {
        fn dwa_parse(response: &str, out: &mut Vec<(u16, String)>) {
            let delimiter = &response[..response.find(['\r', '\n']).unwrap_or(response.len())];
            let mut parts: Vec<&str> = response.split(delimiter).collect();
            parts.remove(0);
            parts.pop();
            for part in parts {
                if !part.contains("--changesetresponse_") {
                    let status_at = part.find("HTTP/1.1 ").expect("status line");
                    let status: u16 = part[status_at + 9..status_at + 12].parse().expect("status");
                    let json = match (part.find('{'), part.rfind('}')) {
                        (Some(a), Some(b)) => part[a..=b].to_owned(),
                        _ => String::new(),
                    };
                    out.push((status, json));
                    continue;
                }
                let part = part.trim();
                let rest = part[part.find(['\r', '\n']).unwrap_or(0) + 1..].trim();
                dwa_parse(rest, out);
            }
        }
        let (_, body) = sample();
        let text = String::from_utf8(body).unwrap();
        assert!(text.starts_with("--batchresponse_"));
        let mut out = Vec::new();
        dwa_parse(&text, &mut out);
        assert_eq!(
            out,
            vec![
                (200, "{\"value\":[]}".to_owned()),
                (204, String::new()),
                (204, String::new()),
                (
                    404,
                    "{\"error\":{\"code\":\"0x80040217\",\"message\":\"x\"}}".to_owned()
                ),
            ]
        );
    }

    /// Our own parser reads our response framing (same multipart rules both ways).
    #[test]
    fn round_trips_through_the_multipart_reader() {
        let (ct, body) = sample();
        // Responses are not requests, but the framing is shared: the status line fails request-line
        // validation, which proves the parts were found.
        let err = parse_batch(&ct, &body).unwrap_err();
        assert!(
            err.message
                .starts_with("The request line 'HTTP/1.1 200 OK' is invalid"),
            "{}",
            err.message
        );
        let fresh = BatchResponseWriter::new();
        assert!(
            fresh
                .content_type()
                .starts_with("multipart/mixed; boundary=batchresponse_")
        );
        assert_eq!(
            String::from_utf8(BatchResponseWriter::with_boundary("x").finish()).unwrap(),
            "--x--\r\n"
        );
        let _ = BatchPart::ChangeSet(vec![]);
    }
}
