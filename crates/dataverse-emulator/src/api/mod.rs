//! The Web API under `/api/data/v9.2/`: a request is parsed into [`Req`], dispatched by path
//! shape and answered with a [`Reply`]. Everything here is synchronous over one SQLite
//! connection, so `$batch` can run parts inside its own savepoints.

pub mod changes;
pub mod crud;
pub mod csdl;
pub mod entitydefs;
pub mod expand;
pub mod fetch;
pub mod functions;
pub mod merge;
pub mod multiple;
pub mod qualify;
pub mod query;
pub mod refs;

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{HeaderMap, Method, StatusCode};
use bytes::Bytes;
use rusqlite::Connection;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};
use crate::path::{Segment, parse_segment, split_segments};
use crate::records::Annotations;
use crate::security::Caller;
use crate::state::Shared;
use crate::store::Schema;

/// One Web API request (also one `$batch` part).
#[derive(Clone, Debug)]
pub struct Req {
    pub method: Method,
    /// Path after `/api/data/v9.2/`, still percent-encoded.
    pub path: String,
    /// Raw query string without `?`.
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A response body.
#[derive(Clone, Debug)]
pub enum Body {
    Empty,
    Json(Value),
    /// JSON already rendered (fast paths).
    RawJson(String),
    Text(String, &'static str),
}

/// A Web API response before it becomes HTTP (or a `$batch` part).
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Reply {
    pub fn json(status: StatusCode, v: Value) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: Body::Json(v),
        }
    }
    pub fn no_content() -> Self {
        Reply {
            status: StatusCode::NO_CONTENT,
            headers: Vec::new(),
            body: Body::Empty,
        }
    }
    pub fn header(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.to_string(), v.into()));
        self
    }
    pub fn from_error(e: &ApiError) -> Self {
        Reply {
            status: e.status,
            headers: e.headers.clone(),
            body: if e.empty_body {
                Body::Empty
            } else {
                Body::Json(e.body())
            },
        }
    }
}

/// What a handler works with.
pub struct Ctx<'a> {
    pub shared: &'a Shared,
    pub conn: &'a Connection,
    pub schema: Arc<Schema>,
    pub caller: Caller,
    /// `<scheme>://<host>/api/data/v9.2/`
    pub base: String,
    /// `$n` → `set(id)` for the change set being run.
    pub content_ids: HashMap<String, String>,
    pub in_batch: bool,
    /// Versions reserved in bulk by `*Multiple` requests: (next, end).
    pub versions: std::cell::Cell<(i64, i64)>,
}

impl Ctx<'_> {
    /// The next change-clock value (from the bulk reservation when one is active).
    pub fn next_version(&self) -> rusqlite::Result<i64> {
        let (next, end) = self.versions.get();
        if next < end {
            self.versions.set((next + 1, end));
            return Ok(next);
        }
        crate::store::next_version(self.conn)
    }
}

/// Parsed `Prefer` header preferences.
#[derive(Clone, Debug, Default)]
pub struct Prefer {
    pub return_representation: bool,
    pub maxpagesize: Option<u32>,
    pub track_changes: bool,
    pub continue_on_error: bool,
    pub annotations: Vec<String>,
}

/// Reads every `Prefer` header (mdsync-odata splits on commas outside quotes, as clients combine
/// all preferences in one header).
pub fn parse_prefer(headers: &HeaderMap) -> Prefer {
    let p = mdsync_odata::Preferences::parse(
        headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    Prefer {
        return_representation: p.return_representation,
        maxpagesize: p.max_page_size,
        track_changes: p.track_changes,
        continue_on_error: p.continue_on_error,
        annotations: p
            .include_annotations
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
    }
}

impl Prefer {
    pub fn annotations(&self) -> Annotations {
        Annotations::new(self.annotations.clone())
    }
    /// The `Preference-Applied` value for the given applied preferences.
    pub fn applied_annotations(&self) -> Option<String> {
        if self.annotations.is_empty() {
            None
        } else {
            Some(format!(
                "odata.include-annotations=\"{}\"",
                self.annotations.join(",")
            ))
        }
    }
}

/// Decoded query options, in order.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    // `+` is a literal plus only when percent-encoded; clients encode spaces as %20 or `+`.
    serde_urlencoded::from_str::<Vec<(String, String)>>(query).unwrap_or_default()
}

/// Dispatches one request by path shape.
pub fn dispatch(ctx: &mut Ctx<'_>, req: &Req) -> ApiResult<Reply> {
    let raw_segments = split_segments(&req.path);
    let mut segs: Vec<Segment> = Vec::with_capacity(raw_segments.len());
    for s in &raw_segments {
        segs.push(parse_segment(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "Bad Request - Error in query syntax. Segment '{s}'."
            ))
        })?);
    }
    let first = segs.first().map(|s| s.name.as_str()).unwrap_or("");
    match (first, segs.len()) {
        ("", 1) => {
            return match req.method {
                Method::GET => Ok(service_document(ctx)),
                _ => Err(ApiError::method_not_allowed()),
            };
        }
        ("$metadata", 1) => return csdl::metadata(ctx, req),
        ("$batch", _) => {
            return Err(ApiError::bad_request(
                "Nested $batch requests are not supported.",
            ));
        }
        ("EntityDefinitions", _) => return entitydefs::handle(ctx, req, &segs),
        _ => {}
    }
    if let Some(reply) = functions::handle(ctx, req, &segs)? {
        return Ok(reply);
    }
    let Some(def) = ctx.schema.by_set(first) else {
        return Err(ApiError::segment_not_found(first));
    };
    let head = &segs[0];
    match (&head.key, segs.len()) {
        (None, 1) => match req.method {
            Method::GET => query::collection(ctx, req, &def),
            Method::POST => crud::create(ctx, req, &def),
            _ => Err(ApiError::method_not_allowed()),
        },
        (None, 2) if segs[1].name == "$count" && req.method == Method::GET => {
            query::count(ctx, req, &def)
        }
        (None, 2) if segs[1].name.starts_with("Microsoft.Dynamics.CRM.") => {
            multiple::handle(ctx, req, &def, &segs[1].name)
        }
        (Some(key), 1) => match req.method {
            Method::GET => crud::retrieve(ctx, req, &def, key),
            Method::PATCH => crud::upsert(ctx, req, &def, key),
            Method::DELETE => crud::delete(ctx, req, &def, key),
            _ => Err(ApiError::method_not_allowed()),
        },
        (Some(key), 2)
            if def.logical_name == "lead"
                && segs[1].name == "Microsoft.Dynamics.CRM.QualifyLead"
                && segs[1].key.is_none() =>
        {
            match req.method {
                Method::POST => qualify::qualify_lead(ctx, req, &def, key),
                _ => Err(ApiError::method_not_allowed()),
            }
        }
        (Some(key), _) => refs::handle(ctx, req, &def, key, &segs[1..]),
        _ => Err(ApiError::segment_not_found(&segs[1].name)),
    }
}

fn service_document(ctx: &Ctx<'_>) -> Reply {
    let mut value: Vec<Value> = ctx
        .schema
        .entities
        .iter()
        .map(|e| json!({"name": e.set_name, "kind": "EntitySet", "url": e.set_name}))
        .collect();
    value.push(
        json!({"name": "EntityDefinitions", "kind": "EntitySet", "url": "EntityDefinitions"}),
    );
    Reply::json(
        StatusCode::OK,
        json!({"@odata.context": format!("{}$metadata", ctx.base), "value": value}),
    )
}

/// Parses a JSON object body, with the real error for malformed JSON.
pub fn json_body(req: &Req) -> ApiResult<Map<String, Value>> {
    if req.body.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request(
            "The request body must be a JSON object.",
        )),
        Err(e) => Err(ApiError::bad_request(format!(
            "Invalid JSON. An unexpected token was found in the request body: {e}"
        ))),
    }
}

/// The header value as text, if present and valid.
pub fn header<'a>(req: &'a Req, name: &str) -> Option<&'a str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}
