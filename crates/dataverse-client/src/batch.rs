//! `$batch`: multipart/mixed framing of requests and change sets, and per-part parsing of the response.
//!
//! Written here (not shared with the emulator's codec) so the client stays usable on its own. Requests use
//! CRLF and absolute request lines; responses are read with CRLF or LF, quoted or bare boundaries.

use reqwest::Method;
use serde_json::Value;
use uuid::Uuid;

use crate::client::{ApiRequest, Client, error_from_response, headers};
use crate::error::{DataverseError, ErrorKind};
use crate::path::RecordKey;

/// Most requests one `$batch` may carry.
pub const MAX_BATCH_REQUESTS: usize = 1000;

/// One request inside a batch. `path` is relative to the API root (`accounts`, `accounts(<id>)`) or a
/// `$n` reference to an earlier request of the same change set.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchRequest {
    pub method: Method,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
    /// Set for `$n` references; requests in a change set without one are numbered automatically.
    pub content_id: Option<String>,
}

impl BatchRequest {
    pub fn new(method: Method, path: impl Into<String>, body: Option<Value>) -> Self {
        Self {
            method,
            path: path.into(),
            headers: Vec::new(),
            body,
            content_id: None,
        }
    }
    pub fn get(path: impl Into<String>) -> Self {
        Self::new(Method::GET, path, None)
    }
    pub fn create(entity_set: &str, row: Value) -> Self {
        Self::new(Method::POST, entity_set, Some(row))
    }
    /// PATCH with `If-Match: *` (update only).
    pub fn update(entity_set: &str, key: impl Into<RecordKey>, row: Value) -> Self {
        Self::new(
            Method::PATCH,
            format!("{entity_set}({})", key.into().segment()),
            Some(row),
        )
        .header("If-Match", "*")
    }
    /// PATCH without conditions (create or update).
    pub fn upsert(entity_set: &str, key: impl Into<RecordKey>, row: Value) -> Self {
        Self::new(
            Method::PATCH,
            format!("{entity_set}({})", key.into().segment()),
            Some(row),
        )
    }
    pub fn delete(entity_set: &str, key: impl Into<RecordKey>) -> Self {
        Self::new(
            Method::DELETE,
            format!("{entity_set}({})", key.into().segment()),
            None,
        )
    }
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    pub fn content_id(mut self, id: impl Into<String>) -> Self {
        self.content_id = Some(id.into());
        self
    }
}

/// A top-level batch item: a lone request or an atomic change set (no GETs inside).
#[derive(Clone, Debug, PartialEq)]
pub enum BatchOp {
    Request(BatchRequest),
    ChangeSet(Vec<BatchRequest>),
}

/// The answer to one request of the batch, in request order (change sets flattened).
#[derive(Clone, Debug, PartialEq)]
pub struct BatchResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// JSON body; a non-JSON body is kept as a string; `None` when empty.
    pub body: Option<Value>,
    pub content_id: Option<String>,
}

impl BatchResponse {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The id of a created/upserted record (`OData-EntityId`, else `Location`, else the body's id).
    pub fn entity_id(&self) -> Option<Uuid> {
        self.header("OData-EntityId")
            .or_else(|| self.header("Location"))
            .and_then(crate::records::id_from_entity_url)
    }

    /// The part's error, classified like any other call's.
    pub fn error(&self, operation: &str) -> Option<DataverseError> {
        if self.is_success() {
            return None;
        }
        let (code, message) = match &self.body {
            Some(Value::Object(_)) => {
                let body = self
                    .body
                    .as_ref()
                    .and_then(|b| b.get("error"))
                    .unwrap_or(&Value::Null);
                (
                    body.get("code").and_then(Value::as_str).map(str::to_string),
                    body.get("message")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                )
            }
            Some(Value::String(text)) => (None, Some(text.clone())),
            _ => (None, None),
        };
        let request_id = self
            .header("REQ_ID")
            .or_else(|| self.header("x-ms-service-request-id"))
            .map(str::to_string);
        Some(DataverseError::from_response(
            operation,
            self.status,
            code,
            message,
            request_id,
        ))
    }
}

/// Frames `ops` as a multipart/mixed body under `boundary`; `base` is the absolute API root.
pub fn encode_batch(ops: &[BatchOp], base: &str, boundary: &str) -> Result<String, DataverseError> {
    let operation = "build $batch";
    let total: usize = ops
        .iter()
        .map(|op| match op {
            BatchOp::Request(_) => 1,
            BatchOp::ChangeSet(parts) => parts.len(),
        })
        .sum();
    if total == 0 || total > MAX_BATCH_REQUESTS {
        return Err(DataverseError::new(
            ErrorKind::InvalidInput,
            operation,
            format!("a batch must hold 1 to {MAX_BATCH_REQUESTS} requests, not {total}"),
        ));
    }
    let mut out = String::new();
    let mut next_content_id = 1u32;
    for op in ops {
        out.push_str(&format!("--{boundary}\r\n"));
        match op {
            BatchOp::Request(request) => {
                out.push_str(
                    "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n",
                );
                encode_request(&mut out, request, base, operation)?;
            }
            BatchOp::ChangeSet(requests) => {
                if requests.is_empty() {
                    return Err(DataverseError::new(
                        ErrorKind::InvalidInput,
                        operation,
                        "an empty change set",
                    ));
                }
                let changeset = format!("changeset_{}", Uuid::new_v4().simple());
                out.push_str(&format!(
                    "Content-Type: multipart/mixed; boundary={changeset}\r\n\r\n"
                ));
                for request in requests {
                    if request.method == Method::GET {
                        return Err(DataverseError::new(
                            ErrorKind::InvalidInput,
                            operation,
                            "a change set cannot contain a GET",
                        ));
                    }
                    let content_id = match &request.content_id {
                        Some(id) => id.clone(),
                        None => {
                            let id = next_content_id.to_string();
                            next_content_id += 1;
                            id
                        }
                    };
                    out.push_str(&format!(
                        "--{changeset}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\
                         Content-ID: {content_id}\r\n\r\n"
                    ));
                    encode_request(&mut out, request, base, operation)?;
                }
                out.push_str(&format!("--{changeset}--\r\n"));
            }
        }
    }
    out.push_str(&format!("--{boundary}--\r\n"));
    Ok(out)
}

fn encode_request(
    out: &mut String,
    request: &BatchRequest,
    base: &str,
    operation: &str,
) -> Result<(), DataverseError> {
    let bad = |what: &str| {
        DataverseError::new(
            ErrorKind::InvalidInput,
            operation,
            format!("batch request {what}"),
        )
    };
    if request.path.contains(['\r', '\n', ' ']) {
        return Err(bad("paths cannot contain spaces or line breaks"));
    }
    let target = if request.path.starts_with('$') || request.path.starts_with("http") {
        request.path.clone()
    } else {
        format!("{base}{}", request.path.trim_start_matches('/'))
    };
    out.push_str(&format!("{} {target} HTTP/1.1\r\n", request.method));
    if request.method == Method::GET {
        out.push_str("Accept: application/json\r\n");
    }
    for (name, value) in &request.headers {
        if name.contains([':', '\r', '\n']) || value.contains(['\r', '\n']) {
            return Err(bad("headers cannot contain line breaks"));
        }
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    match &request.body {
        Some(body) => {
            out.push_str("Content-Type: application/json; type=entry\r\n\r\n");
            out.push_str(&body.to_string());
            out.push_str("\r\n");
        }
        None => out.push_str("\r\n"),
    }
    Ok(())
}

/// The `boundary` parameter of a multipart Content-Type, unquoted.
pub fn boundary_of(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').to_string())
    })
}

/// Parses a batch response body into one [`BatchResponse`] per inner response, in order.
pub fn decode_batch(body: &str, boundary: &str) -> Result<Vec<BatchResponse>, String> {
    let mut responses = Vec::new();
    for part in split_parts(body, boundary)? {
        let (mime_headers, content) = split_head(part);
        let mime = parse_headers(mime_headers);
        let content_type = find(&mime, "content-type").unwrap_or("");
        if content_type
            .to_ascii_lowercase()
            .starts_with("multipart/mixed")
        {
            let inner = boundary_of(content_type).ok_or("a change set part has no boundary")?;
            responses.extend(decode_batch(content, &inner)?);
        } else {
            let mut response = parse_http_response(content)?;
            if response.content_id.is_none() {
                response.content_id = find(&mime, "content-id").map(str::to_string);
            }
            responses.push(response);
        }
    }
    Ok(responses)
}

/// The parts between `--boundary` delimiter lines (each delimiter at a line start), up to `--boundary--`.
fn split_parts<'a>(body: &'a str, boundary: &str) -> Result<Vec<&'a str>, String> {
    let delimiter = format!("--{boundary}");
    // Delimiter positions at line starts.
    let mut starts = Vec::new();
    let mut search = 0;
    while let Some(found) = body[search..].find(&delimiter) {
        let at = search + found;
        if at == 0 || body.as_bytes()[at - 1] == b'\n' {
            starts.push(at);
        }
        search = at + delimiter.len();
    }
    if starts.is_empty() {
        return Err(format!("no part delimited by {delimiter}"));
    }
    let mut parts = Vec::new();
    for (i, &start) in starts.iter().enumerate() {
        let after = start + delimiter.len();
        if body[after..].starts_with("--") {
            return Ok(parts);
        }
        let Some(&end) = starts.get(i + 1) else {
            return Err(format!("the body does not end with {delimiter}--"));
        };
        let line_end = body[after..end].find('\n').map_or(end, |n| after + n + 1);
        let part = body[line_end..end]
            .strip_suffix('\n')
            .unwrap_or(&body[line_end..end]);
        parts.push(part.strip_suffix('\r').unwrap_or(part));
    }
    Err(format!("the body does not end with {delimiter}--"))
}

/// Splits at the first blank line into (headers, rest).
fn split_head(text: &str) -> (&str, &str) {
    let crlf = text.find("\r\n\r\n").map(|i| (i, 4));
    let lf = text.find("\n\n").map(|i| (i, 2));
    let split = match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    };
    match split {
        Some((i, len)) => (&text[..i], &text[i + len..]),
        // Headers only (e.g. a change set's single Content-Type line without a trailing blank line).
        None => (text, ""),
    }
}

fn parse_headers(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name.trim().to_string(), value.trim().to_string()))
        })
        .collect()
}

fn find<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// `HTTP/1.1 204 No Content` + headers + body.
fn parse_http_response(text: &str) -> Result<BatchResponse, String> {
    let text = text.trim_start_matches(['\r', '\n']);
    let (status_line, rest) = text.split_once('\n').unwrap_or((text, ""));
    let mut words = status_line.split_whitespace();
    let version = words.next().unwrap_or("");
    if !version.starts_with("HTTP/") {
        return Err(format!(
            "a part does not start with an HTTP status line: {status_line:?}"
        ));
    }
    let status = words
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("a part has no status code: {status_line:?}"))?;
    let (head, body) = if rest.starts_with("\r\n") || rest.starts_with('\n') {
        ("", rest)
    } else {
        split_head(rest)
    };
    let headers = parse_headers(head);
    let body = body.trim();
    let body = if body.is_empty() {
        None
    } else {
        Some(serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_string())))
    };
    let content_id = find(&headers, "content-id").map(str::to_string);
    Ok(BatchResponse {
        status,
        headers,
        body,
        content_id,
    })
}

impl Client {
    /// Sends `ops` as one `$batch` (stopping at the first failure, the service default) and returns one
    /// response per request. A failed part is a response with an error status, not an `Err`: use
    /// [`BatchResponse::error`]. `Err` means the batch as a whole could not be sent or read.
    pub async fn batch(&self, ops: Vec<BatchOp>) -> Result<Vec<BatchResponse>, DataverseError> {
        self.batch_with(ops, false).await
    }

    /// Like [`Client::batch`]; `continue_on_error` sends `Prefer: odata.continue-on-error` so every part
    /// runs and reports its own status.
    pub async fn batch_with(
        &self,
        ops: Vec<BatchOp>,
        continue_on_error: bool,
    ) -> Result<Vec<BatchResponse>, DataverseError> {
        let operation = "batch";
        let boundary = format!("batch_{}", Uuid::new_v4().simple());
        let body = encode_batch(&ops, self.api_base().as_str(), &boundary)?;
        let mut pairs = Vec::new();
        if continue_on_error {
            pairs.push(("prefer", "odata.continue-on-error".to_string()));
        }
        let content_type = format!("multipart/mixed; boundary=\"{boundary}\"");
        let response = self
            .execute(ApiRequest {
                method: Method::POST,
                url: self.url("$batch", operation)?,
                headers: headers(&pairs, operation)?,
                body: Some((body.into(), content_type)),
                operation: operation.to_string(),
                // Resending is harmless unless a part creates something (POST): reads, PATCH upserts/updates, PUT
                // and DELETE end in the same state when run twice.
                idempotent: ops.iter().all(|op| match op {
                    BatchOp::Request(r) => r.method != Method::POST,
                    BatchOp::ChangeSet(parts) => parts.iter().all(|r| r.method != Method::POST),
                }),
                raw: true,
            })
            .await?;
        let response_type = response.header("content-type").unwrap_or("").to_string();
        let Some(boundary) = response_type
            .to_ascii_lowercase()
            .starts_with("multipart/")
            .then(|| boundary_of(&response_type))
            .flatten()
        else {
            return Err(error_from_response(operation, &response));
        };
        let text = std::str::from_utf8(&response.body).map_err(|e| {
            DataverseError::new(
                ErrorKind::Decode,
                operation,
                "the batch response is not UTF-8",
            )
            .with_source(e)
        })?;
        decode_batch(text, &boundary).map_err(|message| {
            DataverseError::new(
                ErrorKind::Decode,
                operation,
                format!("cannot read the batch response: {message}"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const BASE: &str = "https://org.crm.dynamics.com/api/data/v9.2/";

    #[test]
    fn encodes_requests_and_change_sets_with_crlf() {
        let id = Uuid::parse_str("11111111-2222-3333-4444-555555555555").unwrap();
        let ops = vec![
            BatchOp::ChangeSet(vec![
                BatchRequest::create("accounts", json!({"name":"A"})),
                BatchRequest::new(Method::PATCH, "$1", Some(json!({"name":"B"}))),
            ]),
            BatchOp::Request(BatchRequest::get("accounts?$select=name")),
            BatchOp::Request(BatchRequest::delete("contacts", id)),
        ];
        let body = encode_batch(&ops, BASE, "batch_x").unwrap();
        let changeset = body
            .lines()
            .find_map(|l| l.strip_prefix("Content-Type: multipart/mixed; boundary="))
            .unwrap()
            .trim()
            .to_string();
        let expected = format!(
            "--batch_x\r\nContent-Type: multipart/mixed; boundary={cs}\r\n\r\n\
             --{cs}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 1\r\n\r\n\
             POST {BASE}accounts HTTP/1.1\r\nContent-Type: application/json; type=entry\r\n\r\n{{\"name\":\"A\"}}\r\n\
             --{cs}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 2\r\n\r\n\
             PATCH $1 HTTP/1.1\r\nContent-Type: application/json; type=entry\r\n\r\n{{\"name\":\"B\"}}\r\n\
             --{cs}--\r\n\
             --batch_x\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n\
             GET {BASE}accounts?$select=name HTTP/1.1\r\nAccept: application/json\r\n\r\n\
             --batch_x\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n\
             DELETE {BASE}contacts({id}) HTTP/1.1\r\n\r\n\
             --batch_x--\r\n",
            cs = changeset
        );
        assert_eq!(body, expected);
    }

    #[test]
    fn refuses_gets_in_change_sets_and_oversized_batches() {
        let get_in_set = vec![BatchOp::ChangeSet(vec![BatchRequest::get("accounts")])];
        assert_eq!(
            encode_batch(&get_in_set, BASE, "b").unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        let too_many = vec![BatchOp::Request(BatchRequest::get("accounts")); 1001];
        assert_eq!(
            encode_batch(&too_many, BASE, "b").unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert!(encode_batch(&[], BASE, "b").is_err());
    }

    /// The documented response shape (execute-batch-operations-using-web-api.md), CRLF.
    #[test]
    fn decodes_a_documented_response_with_a_change_set() {
        let body = "--batchresponse_c1bd45c1-dd81-470d-b897-e965846aad2f\r\n\
Content-Type: multipart/mixed; boundary=changesetresponse_ff83b4f1-ab48-430c-b81c-926a2c596abb\r\n\
\r\n\
--changesetresponse_ff83b4f1-ab48-430c-b81c-926a2c596abb\r\n\
Content-Type: application/http\r\n\
Content-Transfer-Encoding: binary\r\n\
Content-ID: 1\r\n\
\r\n\
HTTP/1.1 204 No Content\r\n\
OData-Version: 4.0\r\n\
Location: https://org.crm.dynamics.com/api/data/v9.2/tasks(a59c24f3-fafc-e411-80dd-00155d2a68cb)\r\n\
OData-EntityId: https://org.crm.dynamics.com/api/data/v9.2/tasks(a59c24f3-fafc-e411-80dd-00155d2a68cb)\r\n\
\r\n\
\r\n\
--changesetresponse_ff83b4f1-ab48-430c-b81c-926a2c596abb--\r\n\
--batchresponse_c1bd45c1-dd81-470d-b897-e965846aad2f\r\n\
Content-Type: application/http\r\n\
Content-Transfer-Encoding: binary\r\n\
\r\n\
HTTP/1.1 200 OK\r\n\
Content-Type: application/json; odata.metadata=minimal; odata.streaming=true\r\n\
OData-Version: 4.0\r\n\
\r\n\
{\"@odata.context\":\"x\",\"value\":[{\"subject\":\"Task 1\"}]}\r\n\
--batchresponse_c1bd45c1-dd81-470d-b897-e965846aad2f\r\n\
Content-Type: application/http\r\n\
Content-Transfer-Encoding: binary\r\n\
\r\n\
HTTP/1.1 400 Bad Request\r\n\
REQ_ID: 5ecd1cb3-1730-4ffc-909c-d44c22270026\r\n\
Content-Type: application/json; odata.metadata=minimal\r\n\
OData-Version: 4.0\r\n\
\r\n\
{\"error\":{\"code\":\"0x80044331\",\"message\":\"A validation error occurred.\"}}\r\n\
--batchresponse_c1bd45c1-dd81-470d-b897-e965846aad2f--\r\n";
        let responses =
            decode_batch(body, "batchresponse_c1bd45c1-dd81-470d-b897-e965846aad2f").unwrap();
        assert_eq!(responses.len(), 3);
        assert_eq!(responses[0].status, 204);
        assert_eq!(responses[0].content_id.as_deref(), Some("1"));
        assert_eq!(
            responses[0].entity_id(),
            Some(Uuid::parse_str("a59c24f3-fafc-e411-80dd-00155d2a68cb").unwrap())
        );
        assert_eq!(responses[0].body, None);
        assert_eq!(responses[1].status, 200);
        assert_eq!(
            responses[1].body.as_ref().unwrap()["value"][0]["subject"],
            "Task 1"
        );
        let err = responses[2].error("batch part 3").unwrap();
        assert_eq!(err.code(), Some("0x80044331"));
        assert_eq!(
            err.request_id(),
            Some("5ecd1cb3-1730-4ffc-909c-d44c22270026")
        );
        assert_eq!(err.kind(), ErrorKind::BadRequest);
        assert!(responses[1].error("x").is_none());
    }

    #[test]
    fn decodes_lf_only_and_quoted_boundaries() {
        let body = "--b1\nContent-Type: multipart/mixed; boundary=\"cs\"\n\n--cs\nContent-Type: application/http\nContent-ID: 7\n\nHTTP/1.1 204 No Content\nOData-EntityId: http://h/api/data/v9.2/accounts(00000000-0000-0000-0000-000000000007)\n\n--cs--\n--b1--\n";
        let responses = decode_batch(body, "b1").unwrap();
        assert_eq!(responses.len(), 1);
        assert_eq!(responses[0].content_id.as_deref(), Some("7"));
        assert_eq!(responses[0].entity_id().unwrap().as_u128(), 7);
    }

    #[test]
    fn truncated_bodies_are_errors_not_panics() {
        assert!(
            decode_batch(
                "--b\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 200 OK\r\n",
                "b"
            )
            .is_err()
        );
        assert!(decode_batch("nothing here", "b").is_err());
        assert!(decode_batch("--b\r\n\r\nnot http\r\n--b--", "b").is_err());
        assert_eq!(decode_batch("--b--\r\n", "b").unwrap(), vec![]);
    }

    #[test]
    fn boundaries_are_read_from_content_types() {
        assert_eq!(
            boundary_of("multipart/mixed; boundary=batchresponse_1").as_deref(),
            Some("batchresponse_1")
        );
        assert_eq!(
            boundary_of("multipart/mixed;boundary=\"x y\"").as_deref(),
            Some("x y")
        );
        assert_eq!(boundary_of("application/json"), None);
    }
}
