//! `$batch` (multipart/mixed with change sets).
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::api::{Ctx, Req};
use crate::error::ApiError;

pub fn run(_ctx: &mut Ctx<'_>, _req: &Req, _claims: &Value) -> Response {
    ApiError::new(axum::http::StatusCode::NOT_IMPLEMENTED, "0x80040216", "$batch is not available yet.").into_response()
}
