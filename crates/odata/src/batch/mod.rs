//! `$batch` (OData 4.0 §11.7, multipart/mixed) as Dataverse and dynamics-web-api use it: request parsing,
//! Content-ID (`$n`) references, and the response writer.

mod content_id;
mod multipart;
mod request;
mod response;

pub use content_id::ContentIds;
pub use request::{BatchPart, BatchRequest, MAX_BATCH_REQUESTS, parse_batch};
pub use response::{BatchResponse, BatchResponseWriter, reason_phrase};
