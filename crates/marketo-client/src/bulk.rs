//! Bulk extract jobs: create, enqueue, poll, download the file as a byte stream, cancel.
//!
//! 1029 (queue full, 500 MB/day, already queued) surfaces as [`Error::BulkQuota`] and is never retried:
//! waiting inside one run does not free the daily quota.

use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde_json::Value;

use crate::client::{Call, Client};
use crate::error::Error;
use crate::paging::Pager;
use crate::types::{ExportJob, ExportStatus};

/// What a bulk job exports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExportKind {
    Leads,
    Activities,
    ProgramMembers,
    /// A custom object by API name.
    CustomObject(String),
}

impl ExportKind {
    fn base_path(&self) -> Result<String, Error> {
        Ok(match self {
            Self::Leads => "/bulk/v1/leads".into(),
            Self::Activities => "/bulk/v1/activities".into(),
            Self::ProgramMembers => "/bulk/v1/program/members".into(),
            Self::CustomObject(name) => {
                crate::leads::check_path_segment(name)?;
                format!("/bulk/v1/customobjects/{name}")
            }
        })
    }

    fn job_path(&self, export_id: &str, leaf: &str) -> Result<String, Error> {
        if export_id.is_empty()
            || !export_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(Error::InvalidInput(format!(
                "{export_id:?} is not an export id"
            )));
        }
        Ok(format!("{}/export/{export_id}/{leaf}", self.base_path()?))
    }
}

/// A downloading export file: a stream of byte chunks, never the whole file in memory.
pub struct ExportFile {
    /// HTTP status: 200, or 206 for a range.
    pub status: u16,
    /// `Content-Length` of this response.
    pub content_length: Option<u64>,
    /// `Content-Range` for partial downloads.
    pub content_range: Option<String>,
    stream: std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, Error>> + Send>>,
}

impl std::fmt::Debug for ExportFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportFile")
            .field("status", &self.status)
            .field("content_length", &self.content_length)
            .field("content_range", &self.content_range)
            .finish_non_exhaustive()
    }
}

impl ExportFile {
    /// The next chunk, or `None` at the end of the file.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, Error> {
        self.stream.next().await.transpose()
    }

    /// The chunks as a stream.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, Error>> + Send {
        self.stream
    }
}

impl Client {
    /// `POST /bulk/v1/{kind}/export/create.json` with the documented body
    /// (`{"fields":[..],"format":"CSV","filter":{..},"columnHeaderNames":{..}}`).
    pub async fn create_export(
        &self,
        kind: &ExportKind,
        request: &Value,
    ) -> Result<ExportJob, Error> {
        let path = format!("{}/export/create.json", kind.base_path()?);
        self.export_call(Call::post(path).json(request.clone()))
            .await
    }

    /// `POST .../{exportId}/enqueue.json` (no body).
    pub async fn enqueue_export(
        &self,
        kind: &ExportKind,
        export_id: &str,
    ) -> Result<ExportJob, Error> {
        self.export_call(Call::post(kind.job_path(export_id, "enqueue.json")?))
            .await
    }

    /// `GET .../{exportId}/status.json`.
    pub async fn export_status(
        &self,
        kind: &ExportKind,
        export_id: &str,
    ) -> Result<ExportJob, Error> {
        self.export_call(Call::get(kind.job_path(export_id, "status.json")?))
            .await
    }

    /// `POST .../{exportId}/cancel.json`.
    pub async fn cancel_export(
        &self,
        kind: &ExportKind,
        export_id: &str,
    ) -> Result<ExportJob, Error> {
        self.export_call(Call::post(kind.job_path(export_id, "cancel.json")?))
            .await
    }

    /// `GET /bulk/v1/{kind}/export.json?status=..`: this API user's jobs of the last 7 days.
    pub fn list_exports(
        &self,
        kind: &ExportKind,
        statuses: &[&str],
    ) -> Result<Pager<ExportJob>, Error> {
        let mut call = Call::get(format!("{}/export.json", kind.base_path()?));
        if !statuses.is_empty() {
            call = call.query("status", statuses.join(","));
        }
        Ok(Pager::new(self.clone(), call))
    }

    /// Polls the status every `interval` until the job is terminal or `deadline` passes; returns the
    /// completed job, or [`Error::ExportNotCompleted`].
    pub async fn wait_for_export(
        &self,
        kind: &ExportKind,
        export_id: &str,
        interval: Duration,
        deadline: Duration,
    ) -> Result<ExportJob, Error> {
        let give_up = tokio::time::Instant::now() + deadline;
        loop {
            let job = self.export_status(kind, export_id).await?;
            match job.status {
                ExportStatus::Completed => return Ok(job),
                ExportStatus::Failed | ExportStatus::Cancelled => {
                    return Err(Error::ExportNotCompleted {
                        export_id: export_id.to_owned(),
                        status: job.status.as_str().to_owned(),
                        message: job.error_msg.unwrap_or_default(),
                    });
                }
                _ => {}
            }
            if tokio::time::Instant::now() + interval > give_up {
                return Err(Error::ExportNotCompleted {
                    export_id: export_id.to_owned(),
                    status: job.status.as_str().to_owned(),
                    message: format!("not completed within {deadline:?}"),
                });
            }
            tracing::debug!(
                export_id,
                status = job.status.as_str(),
                "Waiting for bulk export"
            );
            tokio::time::sleep(interval).await;
        }
    }

    /// `GET .../{exportId}/file.json`, optionally a byte range (`first..=last`, or from `first` to the end).
    /// A job that is unknown or not completed answers 404: [`Error::ExportFileUnavailable`].
    pub async fn download_export(
        &self,
        kind: &ExportKind,
        export_id: &str,
        range: Option<(u64, Option<u64>)>,
    ) -> Result<ExportFile, Error> {
        let path = kind.job_path(export_id, "file.json")?;
        let range = range.map(|(first, last)| match last {
            Some(last) => format!("bytes={first}-{last}"),
            None => format!("bytes={first}-"),
        });
        let (response, permit) = self
            .execute_raw(&Call::get(path.clone()), range)
            .await
            .map_err(|e| match e {
                Error::ExportFileUnavailable {
                    status, message, ..
                } => Error::ExportFileUnavailable {
                    export_id: export_id.to_owned(),
                    status,
                    message,
                },
                other => other,
            })?;
        let status = response.status().as_u16();
        let content_length = response.content_length();
        let content_range = response
            .headers()
            .get(reqwest::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let idle = self.config().download_idle_timeout;
        let body = response.bytes_stream();
        // The limiter permit lives as long as the body is being read.
        let stream = futures::stream::unfold(
            (Box::pin(body), permit, path),
            move |(mut body, permit, path)| async move {
                match tokio::time::timeout(idle, body.next()).await {
                    Ok(None) => None,
                    Ok(Some(Ok(chunk))) => Some((Ok(chunk), (body, permit, path))),
                    Ok(Some(Err(e))) => Some((
                        Err(Error::Transport {
                            path: path.clone(),
                            source: e.without_url(),
                        }),
                        (body, permit, path),
                    )),
                    Err(_) => Some((
                        Err(Error::Http {
                            status: 504,
                            path: path.clone(),
                            body: format!("no data for {idle:?} while downloading"),
                            retry_after: None,
                        }),
                        (body, permit, path),
                    )),
                }
            },
        );
        Ok(ExportFile {
            status,
            content_length,
            content_range,
            stream: Box::pin(stream),
        })
    }

    async fn export_call(&self, call: Call) -> Result<ExportJob, Error> {
        let path = call.path.clone();
        let page = self.execute::<ExportJob>(&call).await?;
        page.result.into_iter().next().ok_or_else(|| Error::Decode {
            path,
            message: "no job in the result".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_paths() {
        assert_eq!(
            ExportKind::Leads
                .job_path("ce45a7a1-f19d-4ce2-882c-a3c795940a7d", "file.json")
                .unwrap(),
            "/bulk/v1/leads/export/ce45a7a1-f19d-4ce2-882c-a3c795940a7d/file.json"
        );
        assert_eq!(
            ExportKind::ProgramMembers
                .job_path("x1", "status.json")
                .unwrap(),
            "/bulk/v1/program/members/export/x1/status.json"
        );
        assert!(
            ExportKind::Activities
                .job_path("../x", "status.json")
                .is_err()
        );
        assert!(ExportKind::CustomObject("a/b".into()).base_path().is_err());
    }
}
