//! Bulk extract of leads and activities: jobs in SQLite, a background runner that streams rows from a
//! reader connection into a CSV/TSV/SSV file (never the whole set in memory), `Range` downloads, and the
//! queue/processing/daily-volume limits answered with 1029.

use std::io::{Seek, SeekFrom, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use http::{HeaderValue, Method, StatusCode, header};
use rusqlite::{OptionalExtension, params};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::envelope::{ApiError, ApiResult, Reply};
use crate::routes::{AppState, Ctx, Endpoint};
use crate::store::{Store, StoreError};

/// Longest `createdAt`/`updatedAt` window.
const MAX_WINDOW_SECS: i64 = 31 * 24 * 3600;
/// Jobs listed by `export.json` (the caller's, from the last 7 days).
const LIST_WINDOW_SECS: i64 = 7 * 24 * 3600;

pub const DEFAULT_ACTIVITY_FIELDS: [&str; 8] = [
    "marketoGUID",
    "leadId",
    "activityDate",
    "activityTypeId",
    "campaignId",
    "primaryAttributeValueId",
    "primaryAttributeValue",
    "attributes",
];
const ACTIVITY_FIELDS: [&str; 10] = [
    "marketoGUID",
    "leadId",
    "activityDate",
    "activityTypeId",
    "campaignId",
    "primaryAttributeValueId",
    "primaryAttributeValue",
    "attributes",
    "actionResult",
    "id",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Leads,
    Activities,
}

impl Kind {
    fn tag(self) -> &'static str {
        match self {
            Kind::Leads => "leads",
            Kind::Activities => "activities",
        }
    }
}

/// Maps the path after `/bulk/v1/` to an endpoint.
pub fn resolve(method: &Method, rest: &[&str]) -> Result<Endpoint, ApiError> {
    let kind = match rest.first() {
        Some(&"leads") | Some(&"leads.json") | Some(&"leads/export.json") => Kind::Leads,
        Some(&"activities") => Kind::Activities,
        _ => return Err(ApiError::not_found()),
    };
    let get = *method == Method::GET;
    let post = *method == Method::POST;
    let only = |ok: bool, e: Endpoint| {
        if ok {
            Ok(e)
        } else {
            Err(ApiError::method_not_supported())
        }
    };
    match &rest[1..] {
        ["export.json"] => only(get, Endpoint::BulkList(kind)),
        ["export", "create.json"] => only(post, Endpoint::BulkCreate(kind)),
        ["export", id, "enqueue.json"] => only(post, Endpoint::BulkEnqueue(kind, (*id).into())),
        ["export", id, "status.json"] => only(get, Endpoint::BulkStatus(kind, (*id).into())),
        ["export", id, "file.json"] => only(get, Endpoint::BulkFile(kind, (*id).into())),
        ["export", id, "cancel.json"] => only(post, Endpoint::BulkCancel(kind, (*id).into())),
        _ => Err(ApiError::not_found()),
    }
}

/// A job row.
struct Job {
    id: String,
    kind: String,
    user_id: i64,
    format: String,
    status: String,
    request: Value,
    created_at: i64,
    queued_at: Option<i64>,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    number_of_records: Option<i64>,
    file_size: Option<i64>,
    file_checksum: Option<String>,
    error_msg: Option<String>,
}

const JOB_SELECT: &str =
    "SELECT id, kind, user_id, format, status, request, created_at, queued_at, started_at,
    finished_at, number_of_records, file_size, file_checksum, error_msg FROM export_jobs";

impl Job {
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        let request: String = r.get(5)?;
        Ok(Self {
            id: r.get(0)?,
            kind: r.get(1)?,
            user_id: r.get(2)?,
            format: r.get(3)?,
            status: r.get(4)?,
            request: serde_json::from_str(&request).unwrap_or(Value::Null),
            created_at: r.get(6)?,
            queued_at: r.get(7)?,
            started_at: r.get(8)?,
            finished_at: r.get(9)?,
            number_of_records: r.get(10)?,
            file_size: r.get(11)?,
            file_checksum: r.get(12)?,
            error_msg: r.get(13)?,
        })
    }

    fn render(&self) -> Value {
        let mut m = Map::new();
        m.insert("exportId".into(), json!(self.id));
        m.insert("format".into(), json!(self.format));
        m.insert("status".into(), json!(self.status));
        m.insert(
            "createdAt".into(),
            json!(crate::time::format(self.created_at)),
        );
        for (k, v) in [
            ("queuedAt", self.queued_at),
            ("startedAt", self.started_at),
            ("finishedAt", self.finished_at),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), json!(crate::time::format(v)));
            }
        }
        if self.status == "Completed" {
            m.insert("numberOfRecords".into(), json!(self.number_of_records));
            m.insert("fileSize".into(), json!(self.file_size));
            m.insert("fileChecksum".into(), json!(self.file_checksum));
        }
        if let Some(e) = &self.error_msg {
            m.insert("errorMsg".into(), json!(e));
        }
        Value::Object(m)
    }
}

fn load_job(conn: &rusqlite::Connection, id: &str) -> Result<Option<Job>, StoreError> {
    Ok(conn
        .query_row(&format!("{JOB_SELECT} WHERE id = ?1"), [id], Job::from_row)
        .optional()?)
}

/// The caller's job of this kind, or 1003.
fn own_job(conn: &rusqlite::Connection, ctx: &Ctx, kind: Kind, id: &str) -> Result<Job, ApiError> {
    load_job(conn, id)?
        .filter(|j| j.user_id == ctx.user.id && j.kind == kind.tag())
        .ok_or_else(|| ApiError::invalid_data(format!("Export id '{id}' not found")))
}

fn window(filter: &Map<String, Value>, name: &str) -> Result<Option<(i64, i64)>, ApiError> {
    let Some(range) = filter.get(name) else {
        return Ok(None);
    };
    let text = |k: &str| range.get(k).and_then(Value::as_str).unwrap_or("");
    let start = crate::time::parse(text("startAt"))
        .ok_or_else(|| ApiError::new("1003", format!("Invalid value for {name}.startAt")))?;
    let end = crate::time::parse(text("endAt"))
        .ok_or_else(|| ApiError::new("1003", format!("Invalid value for {name}.endAt")))?;
    if end < start {
        return Err(ApiError::invalid_data(format!(
            "{name}.endAt must not be before startAt"
        )));
    }
    if end - start > MAX_WINDOW_SECS {
        return Err(ApiError::invalid_data(format!(
            "{name} date range exceeds the maximum of 31 days"
        )));
    }
    Ok(Some((start, end)))
}

/// The list a lead export's `staticListId` / `staticListName` names (1003 when there is none).
fn static_list_filter(
    conn: &rusqlite::Connection,
    filter: &Map<String, Value>,
) -> Result<Option<i64>, ApiError> {
    if let Some(id) = filter.get("staticListId") {
        let id = id
            .as_i64()
            .or_else(|| id.as_str().and_then(|s| s.trim().parse().ok()))
            .ok_or_else(|| ApiError::invalid_data("staticListId must be an integer"))?;
        crate::lists::require(conn, id)
            .map_err(|_| ApiError::invalid_data(format!("Static list '{id}' not found")))?;
        return Ok(Some(id));
    }
    if let Some(name) = filter.get("staticListName") {
        let name = name.as_str().unwrap_or_default();
        let id: Option<i64> = conn
            .query_row("SELECT id FROM lists WHERE name = ?1", [name], |r| r.get(0))
            .optional()?;
        return id
            .map(Some)
            .ok_or_else(|| ApiError::invalid_data(format!("Static list '{name}' not found")));
    }
    Ok(None)
}

/// `POST /bulk/v1/{leads|activities}/export/create.json`.
pub fn create(state: &AppState, ctx: &Ctx, kind: Kind) -> ApiResult {
    let body = ctx.params.json().cloned().unwrap_or(Value::Null);
    let format = body
        .get("format")
        .and_then(Value::as_str)
        .unwrap_or("CSV")
        .to_ascii_uppercase();
    if !matches!(format.as_str(), "CSV" | "TSV" | "SSV") {
        return Err(ApiError::invalid_data(format!("Invalid format '{format}'")));
    }
    let filter = match body.get("filter") {
        Some(Value::Object(f)) => f.clone(),
        _ => return Err(ApiError::blank("filter")),
    };
    let fields: Vec<String> = match body.get("fields") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(String::from))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| ApiError::invalid_data("fields must be an array of strings"))?,
        Some(Value::Null) | None => Vec::new(),
        Some(_) => return Err(ApiError::invalid_data("fields must be an array of strings")),
    };
    let conn = state.store.lock();
    let created = window(&filter, "createdAt")?;
    let updated = window(&filter, "updatedAt")?;
    match kind {
        Kind::Leads => {
            if fields.is_empty() {
                return Err(ApiError::blank("fields"));
            }
            let catalog = crate::fields::load(&conn)?;
            for f in &fields {
                if catalog.get(f).is_none() {
                    return Err(ApiError::invalid_data(format!("Invalid field: '{f}'")));
                }
            }
            for list in ["smartListId", "smartListName"] {
                if filter.contains_key(list) {
                    return Err(ApiError::invalid_data(format!("{list} not found")));
                }
            }
            let static_list = static_list_filter(&conn, &filter)?;
            if updated.is_some() && state.config.bulk_updated_at_filter_unsupported {
                return Err(ApiError::new(
                    "1035",
                    "Unsupported filter type for target subscription",
                ));
            }
            let filters = [created.is_some(), updated.is_some(), static_list.is_some()]
                .iter()
                .filter(|f| **f)
                .count();
            if filters != 1 {
                return Err(ApiError::invalid_data(
                    "Exactly one of createdAt, updatedAt, staticListId, staticListName, smartListId or smartListName is required",
                ));
            }
        }
        Kind::Activities => {
            if created.is_none() {
                return Err(ApiError::blank("createdAt"));
            }
            for f in &fields {
                if !ACTIVITY_FIELDS.contains(&f.as_str()) {
                    return Err(ApiError::invalid_data(format!("Invalid field: '{f}'")));
                }
            }
            if let Some(types) = filter.get("activityTypeIds") {
                let ids: Option<Vec<i64>> = types
                    .as_array()
                    .map(|a| a.iter().map(Value::as_i64).collect::<Option<Vec<_>>>())
                    .unwrap_or(None);
                let ids = ids.ok_or_else(|| {
                    ApiError::invalid_data("activityTypeIds must be an array of integers")
                })?;
                if ids.contains(&crate::activities::DELETE_LEAD) {
                    return Err(ApiError::invalid_data(
                        "Activity type 37 (Delete Lead) is not supported",
                    ));
                }
            }
        }
    }
    let id = uuid::Uuid::new_v4().to_string();
    let now = crate::time::now();
    let seq: i64 = conn.query_row(
        "SELECT COALESCE(MAX(seq), 0) + 1 FROM export_jobs",
        [],
        |r| r.get(0),
    )?;
    conn.execute(
        "INSERT INTO export_jobs(id, seq, kind, user_id, format, status, request, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 'Created', ?6, ?7)",
        params![
            id,
            seq,
            kind.tag(),
            ctx.user.id,
            format,
            body.to_string(),
            now
        ],
    )?;
    let job = load_job(&conn, &id)?.ok_or_else(ApiError::system_error)?;
    Ok(Reply::result(vec![job.render()]))
}

/// `POST .../{exportId}/enqueue.json`.
pub fn enqueue(state: &AppState, ctx: &Ctx, kind: Kind, id: &str) -> ApiResult {
    let conn = state.store.lock();
    let job = own_job(&conn, ctx, kind, id)?;
    match job.status.as_str() {
        "Created" => {}
        "Queued" | "Processing" => return Err(ApiError::new("1029", "Job already queued")),
        other => {
            return Err(ApiError::invalid_data(format!(
                "Job in status '{other}' cannot be enqueued"
            )));
        }
    }
    if state.config.limits_enabled {
        let queued: i64 = conn.query_row(
            "SELECT COUNT(*) FROM export_jobs WHERE status IN ('Queued', 'Processing')",
            [],
            |r| r.get(0),
        )?;
        if queued >= i64::from(state.config.bulk_max_queued) {
            return Err(ApiError::new("1029", "Too many jobs in queue"));
        }
        let day_start = day_start(crate::time::now());
        let bytes: i64 = conn.query_row(
            "SELECT COALESCE(SUM(file_size), 0) FROM export_jobs WHERE status = 'Completed' AND finished_at >= ?1",
            [day_start],
            |r| r.get(0),
        )?;
        if bytes as u64 >= state.config.bulk_daily_bytes {
            return Err(ApiError::new(
                "1029",
                format!(
                    "Export daily quota {}MB exceeded.",
                    state.config.bulk_daily_bytes / (1024 * 1024)
                ),
            ));
        }
    }
    let now = crate::time::now();
    conn.execute(
        "UPDATE export_jobs SET status = 'Queued', queued_at = ?1 WHERE id = ?2",
        params![now, id],
    )?;
    let job = load_job(&conn, id)?.ok_or_else(ApiError::system_error)?;
    drop(conn);
    state.bulk.wake();
    Ok(Reply::result(vec![job.render()]))
}

/// Start of the current quota day (00:00 US Central, fixed UTC-6).
fn day_start(now: i64) -> i64 {
    let shifted = now - 6 * 3600;
    shifted - shifted.rem_euclid(86_400) + 6 * 3600
}

pub fn status(state: &AppState, ctx: &Ctx, kind: Kind, id: &str) -> ApiResult {
    let conn = state.store.lock();
    let job = own_job(&conn, ctx, kind, id)?;
    Ok(Reply::result(vec![job.render()]))
}

pub fn cancel(state: &AppState, ctx: &Ctx, kind: Kind, id: &str) -> ApiResult {
    let conn = state.store.lock();
    let job = own_job(&conn, ctx, kind, id)?;
    if !matches!(job.status.as_str(), "Created" | "Queued" | "Processing") {
        return Err(ApiError::invalid_data(format!(
            "Job in status '{}' cannot be cancelled",
            job.status
        )));
    }
    conn.execute(
        "UPDATE export_jobs SET status = 'Cancelled', finished_at = ?1 WHERE id = ?2",
        params![crate::time::now(), id],
    )?;
    let job = load_job(&conn, id)?.ok_or_else(ApiError::system_error)?;
    Ok(Reply::result(vec![job.render()]))
}

/// `GET /bulk/v1/{t}/export.json?status=&batchSize=&nextPageToken=`.
pub fn list(state: &AppState, ctx: &Ctx, kind: Kind) -> ApiResult {
    let statuses = ctx.params.list("status");
    let batch = match ctx.params.get("batchSize") {
        None => 300,
        Some(t) => t
            .parse::<i64>()
            .ok()
            .filter(|b| *b > 0)
            .map(|b| b.min(300))
            .ok_or_else(|| ApiError::invalid_value(&t, "integer"))?,
    };
    let after = match ctx.params.get("nextPageToken") {
        Some(t) => crate::paging::decode(&t)?,
        None => 0,
    };
    let conn = state.store.lock();
    let mut stmt = conn.prepare(&format!(
        "{JOB_SELECT} WHERE kind = ?1 AND user_id = ?2 AND created_at >= ?3 AND seq > ?4
         AND (?5 = '[]' OR status IN (SELECT value FROM json_each(?5))) ORDER BY seq LIMIT ?6"
    ))?;
    let jobs = stmt
        .query_map(
            params![
                kind.tag(),
                ctx.user.id,
                crate::time::now() - LIST_WINDOW_SECS,
                after,
                serde_json::to_string(&statuses)?,
                batch + 1
            ],
            Job::from_row,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    let more = jobs.len() as i64 > batch;
    let page: Vec<&Job> = jobs.iter().take(batch as usize).collect();
    let mut reply = Reply::result(page.iter().map(|j| j.render()).collect());
    if more && let Some(last) = page.last() {
        let seq: i64 = conn.query_row(
            "SELECT seq FROM export_jobs WHERE id = ?1",
            [&last.id],
            |r| r.get(0),
        )?;
        reply = reply
            .with(
                "nextPageToken",
                json!(crate::paging::encode(crate::time::now(), seq)),
            )
            .with("moreResult", json!(true));
    }
    Ok(reply)
}

fn not_found_file() -> ApiError {
    ApiError::http(StatusCode::NOT_FOUND, "File not found")
}

/// `GET .../{exportId}/file.json`: the file (200) or a byte range (206); plain-text 404 until Completed.
pub fn file(state: &AppState, ctx: &Ctx, kind: Kind, id: &str) -> ApiResult {
    let job = {
        let conn = state.store.lock();
        load_job(&conn, id)?
            .filter(|j| j.user_id == ctx.user.id && j.kind == kind.tag())
            .ok_or_else(not_found_file)?
    };
    if job.status != "Completed" {
        return Err(not_found_file());
    }
    let path = state.store.files_dir().join(format!("{}.out", job.id));
    let mut file = std::fs::File::open(&path).map_err(|_| not_found_file())?;
    let size = file.metadata().map_err(|_| not_found_file())?.len();
    let range = ctx
        .headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|r| parse_range(r, size));
    let content_type = match job.format.as_str() {
        "TSV" => "text/tab-separated-values;charset=UTF-8",
        "SSV" => "text/plain;charset=UTF-8",
        _ => "text/csv;charset=UTF-8",
    };
    let (status, start, len) = match range {
        None => (StatusCode::OK, 0, size),
        Some(Some((start, end))) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        Some(None) => {
            let mut response =
                crate::envelope::plain_response(StatusCode::RANGE_NOT_SATISFIABLE, String::new());
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(Reply::Raw(response));
        }
    };
    file.seek(SeekFrom::Start(start))
        .map_err(|_| not_found_file())?;
    let reader = tokio::io::AsyncReadExt::take(tokio::fs::File::from_std(file), len);
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(reader));
    let mut response = http::Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, len)
        .header(header::ACCEPT_RANGES, "bytes");
    if status == StatusCode::PARTIAL_CONTENT {
        response = response.header(
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{}", start, start + len - 1, size),
        );
    }
    response
        .body(body)
        .map(Reply::Raw)
        .map_err(|_| ApiError::system_error())
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` → inclusive (start, end); `None` when unsatisfiable.
fn parse_range(header: &str, size: u64) -> Option<(u64, u64)> {
    let spec = header.trim().strip_prefix("bytes=")?;
    let spec = spec.split(',').next()?.trim();
    let (a, b) = spec.split_once('-')?;
    if size == 0 {
        return None;
    }
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 {
            return None;
        }
        (size.saturating_sub(n), size - 1)
    } else {
        let start: u64 = a.parse().ok()?;
        let end: u64 = if b.is_empty() {
            size - 1
        } else {
            b.parse::<u64>().ok()?.min(size - 1)
        };
        (start, end)
    };
    (start <= end && start < size).then_some((start, end))
}

/// Jobs left Processing by a crash go back to Queued so they run again.
pub fn recover(store: &Store) -> Result<(), StoreError> {
    store.lock().execute(
        "UPDATE export_jobs SET status = 'Queued', started_at = NULL WHERE status = 'Processing'",
        [],
    )?;
    Ok(())
}

/// The background task that moves Queued jobs to Processing and produces their files.
pub struct Runner {
    notify: Arc<Notify>,
    stopped: Arc<AtomicBool>,
    max_processing: u32,
    delay: Duration,
}

impl Runner {
    pub fn new(config: &crate::Config) -> Self {
        Self {
            notify: Arc::new(Notify::new()),
            stopped: Arc::new(AtomicBool::new(false)),
            max_processing: config.bulk_max_processing.max(1),
            delay: config.bulk_status_delay,
        }
    }

    pub fn wake(&self) {
        self.notify.notify_one();
    }

    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }

    /// Starts the scheduling loop on the current runtime.
    pub fn start(&self, state: Arc<AppState>) {
        let notify = Arc::clone(&self.notify);
        let stopped = Arc::clone(&self.stopped);
        let max = i64::from(self.max_processing);
        let delay = self.delay.as_secs() as i64;
        tokio::spawn(async move {
            while !stopped.load(Ordering::SeqCst) {
                let picked = {
                    let state = Arc::clone(&state);
                    tokio::task::spawn_blocking(move || pick(&state, max, delay)).await
                };
                match picked {
                    Ok(Ok(Some(job_id))) => {
                        let state = Arc::clone(&state);
                        let notify = Arc::clone(&notify);
                        tokio::spawn(async move {
                            let worker = Arc::clone(&state);
                            let id = job_id.clone();
                            let outcome =
                                tokio::task::spawn_blocking(move || run(&worker, &id)).await;
                            if let Ok(Err(err)) | Err(err) = outcome
                                .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))
                            {
                                tracing::error!(error = %err, job = %job_id, "bulk export failed");
                                let conn = state.store.lock();
                                let _ = conn.execute(
                                    "UPDATE export_jobs SET status = 'Failed', finished_at = ?1, error_msg = ?2
                                     WHERE id = ?3 AND status = 'Processing'",
                                    params![crate::time::now(), err.to_string(), job_id],
                                );
                            }
                            notify.notify_one();
                        });
                        continue;
                    }
                    Ok(Ok(None)) => {}
                    Ok(Err(err)) => tracing::error!(error = %err, "bulk scheduler failed"),
                    Err(err) => tracing::error!(error = %err, "bulk scheduler panicked"),
                }
                tokio::select! {
                    _ = notify.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
            }
        });
    }
}

/// Moves the oldest eligible Queued job to Processing when a processing slot is free.
fn pick(state: &AppState, max: i64, delay: i64) -> Result<Option<String>, StoreError> {
    let conn = state.store.lock();
    let processing: i64 = conn.query_row(
        "SELECT COUNT(*) FROM export_jobs WHERE status = 'Processing'",
        [],
        |r| r.get(0),
    )?;
    if processing >= max {
        return Ok(None);
    }
    let now = crate::time::now();
    let id: Option<String> = conn
        .query_row(
            "SELECT id FROM export_jobs WHERE status = 'Queued' AND queued_at <= ?1 ORDER BY seq LIMIT 1",
            [now - delay],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(id) = &id {
        conn.execute(
            "UPDATE export_jobs SET status = 'Processing', started_at = ?1 WHERE id = ?2",
            params![now, id],
        )?;
    }
    Ok(id)
}

/// Counts bytes and hashes them on their way to the file.
struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::String(s) if s.is_empty() => "null".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Produces one job's file, streaming rows from a reader connection.
fn run(state: &AppState, id: &str) -> Result<(), StoreError> {
    let job = {
        let conn = state.store.lock();
        match load_job(&conn, id)? {
            Some(j) => j,
            None => return Ok(()),
        }
    };
    let started = std::time::Instant::now();
    let path = state.store.files_dir().join(format!("{}.out", job.id));
    let file = std::io::BufWriter::with_capacity(256 * 1024, std::fs::File::create(&path)?);
    let mut hashing = HashingWriter {
        inner: file,
        hasher: Sha256::new(),
        bytes: 0,
    };
    let delimiter = match job.format.as_str() {
        "TSV" => b'\t',
        "SSV" => b' ',
        _ => b',',
    };
    let reader = state.store.reader()?;
    let mut records = 0i64;
    let cancelled = || -> bool {
        let conn = state.store.lock();
        load_job(&conn, id)
            .ok()
            .flatten()
            .is_none_or(|j| j.status != "Processing")
    };
    {
        let mut csv = csv::WriterBuilder::new()
            .delimiter(delimiter)
            .from_writer(&mut hashing);
        let filter = job.request.get("filter").cloned().unwrap_or(Value::Null);
        let range = |name: &str| -> Option<(i64, i64)> {
            let r = filter.get(name)?;
            Some((
                crate::time::parse(r.get("startAt")?.as_str()?)?,
                crate::time::parse(r.get("endAt")?.as_str()?)?,
            ))
        };
        if job.kind == "leads" {
            let fields: Vec<String> = job.request["fields"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let headers = job
                .request
                .get("columnHeaderNames")
                .and_then(Value::as_object);
            let header: Vec<String> = fields
                .iter()
                .map(|f| {
                    headers
                        .and_then(|h| h.get(f))
                        .and_then(Value::as_str)
                        .unwrap_or(f)
                        .to_string()
                })
                .collect();
            csv.write_record(&header).map_err(csv_err)?;
            let list: Option<i64> = {
                let conn = state.store.lock();
                static_list_filter(&conn, filter.as_object().unwrap_or(&Map::new()))
                    .ok()
                    .flatten()
            };
            let mut stmt;
            let mut rows = if let Some(list) = list {
                stmt = reader.prepare(&format!(
                    "{} WHERE id IN (SELECT lead_id FROM list_members WHERE list_id = ?1) ORDER BY id",
                    crate::lead_store::SELECT
                ))?;
                stmt.query(params![list])?
            } else {
                let (column, (start, end)) = match (range("createdAt"), range("updatedAt")) {
                    (Some(r), _) => ("created_at", r),
                    (None, Some(r)) => ("updated_at", r),
                    (None, None) => ("created_at", (0, 0)),
                };
                stmt = reader.prepare(&format!(
                    "{} WHERE {column} >= ?1 AND {column} <= ?2 ORDER BY id",
                    crate::lead_store::SELECT
                ))?;
                stmt.query(params![start, end])?
            };
            while let Some(row) = rows.next()? {
                let lead = crate::lead_store::Lead::from_row(row)?;
                let record: Vec<String> = fields.iter().map(|f| cell(&lead.value(f))).collect();
                csv.write_record(&record).map_err(csv_err)?;
                records += 1;
                if records % 50_000 == 0 && cancelled() {
                    break;
                }
            }
        } else {
            let fields: Vec<String> = match job.request.get("fields").and_then(Value::as_array) {
                Some(a) if !a.is_empty() => a
                    .iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect(),
                _ => DEFAULT_ACTIVITY_FIELDS
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            };
            let headers = job
                .request
                .get("columnHeaderNames")
                .and_then(Value::as_object);
            let header: Vec<String> = fields
                .iter()
                .map(|f| {
                    headers
                        .and_then(|h| h.get(f))
                        .and_then(Value::as_str)
                        .unwrap_or(f)
                        .to_string()
                })
                .collect();
            csv.write_record(&header).map_err(csv_err)?;
            let (start, end) = range("createdAt").unwrap_or((0, 0));
            let types: Vec<i64> = filter
                .get("activityTypeIds")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default();
            let mut stmt = reader.prepare(&format!(
                "SELECT id, lead_id, activity_at, type_id, pav_id, pav, fields, attributes FROM activities
                 WHERE activity_at >= ?1 AND activity_at <= ?2 AND type_id != 37 AND {}
                 AND (?3 = '[]' OR type_id IN (SELECT value FROM json_each(?3))) ORDER BY id",
                crate::activities::LIVE_LEAD
            ))?;
            let mut rows = stmt.query(params![start, end, serde_json::to_string(&types)?])?;
            while let Some(row) = rows.next()? {
                let record = crate::activities::activity_record(&crate::activities::read_row(row)?);
                let line: Vec<String> = fields
                    .iter()
                    .map(|f| match f.as_str() {
                        "attributes" => {
                            let mut obj = Map::new();
                            for a in record["attributes"].as_array().into_iter().flatten() {
                                if let Some(name) = a["name"].as_str() {
                                    obj.insert(name.to_string(), a["value"].clone());
                                }
                            }
                            if obj.is_empty() {
                                "null".to_string()
                            } else {
                                Value::Object(obj).to_string()
                            }
                        }
                        other => cell(&record[other]),
                    })
                    .collect();
                csv.write_record(&line).map_err(csv_err)?;
                records += 1;
                if records % 50_000 == 0 && cancelled() {
                    break;
                }
            }
        }
        csv.flush()?;
    }
    hashing.flush()?;
    let HashingWriter {
        inner,
        hasher,
        bytes: size,
    } = hashing;
    drop(inner);
    let checksum = format!("sha256:{}", hex::encode(hasher.finalize()));
    if let Some(wait) = state
        .config
        .bulk_status_delay
        .checked_sub(started.elapsed())
    {
        std::thread::sleep(wait);
    }
    let conn = state.store.lock();
    let updated = conn.execute(
        "UPDATE export_jobs SET status = 'Completed', finished_at = ?1, number_of_records = ?2,
             file_size = ?3, file_checksum = ?4 WHERE id = ?5 AND status = 'Processing'",
        params![crate::time::now(), records, size as i64, checksum, id],
    )?;
    if updated == 0 {
        let _ = std::fs::remove_file(&path);
    }
    Ok(())
}

fn csv_err(err: csv::Error) -> StoreError {
    StoreError::Io(std::io::Error::other(err.to_string()))
}
