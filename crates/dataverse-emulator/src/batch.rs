//! `$batch`: multipart/mixed parsed and written by mdsync-odata; every part is dispatched through
//! the same [`api::dispatch`] as a plain request. A change set runs inside one SQLite SAVEPOINT
//! and is rolled back as a whole when any of its operations fails.

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mdsync_odata::{
    BatchPart, BatchRequest, BatchResponse, BatchResponseWriter, ContentIds, parse_batch,
};
use serde_json::Value;

use crate::api::{self, Body, Ctx, Reply, Req, parse_prefer};
use crate::error::ApiError;

/// `host[:port]` of an absolute URL, lower-cased.
fn authority(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    Some(
        rest.split(['/', '?'])
            .next()
            .unwrap_or("")
            .to_ascii_lowercase(),
    )
}

fn to_req(r: &BatchRequest, ids: &ContentIds, base: &str) -> Result<Req, ApiError> {
    let url = ids.resolve_url(&r.url)?;
    // An absolute part URL must address this service, never another host.
    if let Some(host) = authority(&url)
        && Some(host) != authority(base)
    {
        return Err(ApiError::bad_request(format!(
            "The request URI '{url}' is not valid. Since the batch request is for the service '{base}', the request URIs of its parts must be relative or start with the service root."
        )));
    }
    let target = mdsync_odata::key::split_request_target(&url);
    let method = Method::from_bytes(r.method.as_bytes()).map_err(|_| {
        ApiError::bad_request(format!("Invalid HTTP method '{}' in batch part.", r.method))
    })?;
    let mut headers = HeaderMap::new();
    for (k, v) in &r.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.append(n, v);
        }
    }
    let body = ids.resolve_body(&r.body)?;
    Ok(Req {
        method,
        path: target.path.to_string(),
        query: target.query.unwrap_or("").to_string(),
        headers,
        body: body.into(),
    })
}

fn to_part(reply: Reply, content_id: Option<String>) -> BatchResponse {
    let mut headers = Vec::new();
    let body = match reply.body {
        Body::Empty => Vec::new(),
        Body::Json(v) => {
            headers.push((
                "Content-Type".to_string(),
                "application/json; odata.metadata=minimal; odata.streaming=true".to_string(),
            ));
            serde_json::to_vec(&v).unwrap_or_default()
        }
        Body::RawJson(t) => {
            headers.push((
                "Content-Type".to_string(),
                "application/json; odata.metadata=minimal; odata.streaming=true".to_string(),
            ));
            t.into_bytes()
        }
        Body::Text(t, ct) => {
            headers.push(("Content-Type".to_string(), ct.to_string()));
            t.into_bytes()
        }
    };
    headers.push(("OData-Version".to_string(), "4.0".to_string()));
    if reply.status.as_u16() >= 400 {
        headers.push(("REQ_ID".to_string(), uuid::Uuid::new_v4().to_string()));
    }
    for (k, v) in reply.headers {
        if k.eq_ignore_ascii_case("OData-EntityId") {
            headers.push(("Location".to_string(), v.clone()));
        }
        headers.push((k, v));
    }
    BatchResponse {
        status: reply.status.as_u16(),
        headers,
        body,
        content_id,
    }
}

fn run_one(ctx: &mut Ctx<'_>, r: &BatchRequest, ids: &ContentIds) -> Reply {
    let base = ctx.base.clone();
    let result = to_req(r, ids, &base).and_then(|req| api::dispatch(ctx, &req));
    match result {
        Ok(reply) => reply,
        Err(e) => Reply::from_error(&e),
    }
}

fn entity_id_of(reply: &Reply) -> Option<String> {
    reply
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("OData-EntityId"))
        .map(|(_, v)| v.clone())
}

/// Runs `POST $batch`.
pub fn run(ctx: &mut Ctx<'_>, req: &Req, _claims: &Value) -> Response {
    if req.method != Method::POST {
        return ApiError::method_not_allowed().into_response();
    }
    let content_type = req
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let parts = match parse_batch(content_type, &req.body) {
        Ok(p) => p,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let continue_on_error = parse_prefer(&req.headers).continue_on_error;
    ctx.in_batch = true;
    let mut writer = BatchResponseWriter::new();
    let mut overall = StatusCode::OK;
    for part in parts {
        match part {
            BatchPart::Request(r) => {
                let reply = run_one(ctx, &r, &ContentIds::new());
                let failed = reply.status.as_u16() >= 400;
                let status = reply.status;
                writer.add_response(&to_part(reply, r.content_id.clone()));
                if failed && !continue_on_error {
                    overall = status;
                    break;
                }
            }
            BatchPart::ChangeSet(requests) => {
                if let Err(e) = ctx.conn.execute_batch("SAVEPOINT changeset") {
                    return ApiError::from(e).into_response();
                }
                let mut ids = ContentIds::new();
                ctx.content_ids.clear();
                let mut responses = Vec::with_capacity(requests.len());
                let mut failure: Option<BatchResponse> = None;
                for r in &requests {
                    let reply = run_one(ctx, r, &ids);
                    if reply.status.as_u16() >= 400 {
                        failure = Some(to_part(reply, r.content_id.clone()));
                        break;
                    }
                    if let (Some(cid), Some(url)) = (&r.content_id, entity_id_of(&reply)) {
                        ids.insert(cid, url.clone());
                        ctx.content_ids
                            .insert(cid.trim_start_matches('$').to_string(), url);
                    }
                    responses.push(to_part(reply, r.content_id.clone()));
                }
                ctx.content_ids.clear();
                match failure {
                    None => {
                        if let Err(e) = ctx.conn.execute_batch("RELEASE changeset") {
                            return ApiError::from(e).into_response();
                        }
                        writer.add_change_set(&responses);
                    }
                    Some(err) => {
                        if let Err(e) = ctx
                            .conn
                            .execute_batch("ROLLBACK TO changeset; RELEASE changeset")
                        {
                            return ApiError::from(e).into_response();
                        }
                        let status =
                            StatusCode::from_u16(err.status).unwrap_or(StatusCode::BAD_REQUEST);
                        writer.add_response(&err);
                        if !continue_on_error {
                            overall = status;
                            break;
                        }
                    }
                }
            }
        }
    }
    let ct = writer.content_type();
    let body = writer.finish();
    let mut resp = (overall, body).into_response();
    if let Ok(v) = HeaderValue::from_str(&ct) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp.headers_mut()
        .insert("OData-Version", HeaderValue::from_static("4.0"));
    resp
}
