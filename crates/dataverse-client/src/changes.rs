//! Change tracking: an initial full read that ends in a delta link, then deltas from that link.
//!
//! The delta link is opaque and must be stored verbatim. It appears on the last page only; a stream that
//! ends without one is an error (the caller would otherwise lose its place). An expired or unusable link
//! fails with [`ErrorKind::ChangeTokenExpired`] so the sync can start over with [`Client::track_changes`].

use futures::Stream;
use serde_json::Value;
use uuid::Uuid;

use crate::client::Client;
use crate::error::{DataverseError, ErrorKind};
use crate::path::check_name;
use crate::query::{Collection, Row, prefer};

/// One changed row.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Created or updated (the initial read reports every row this way).
    Upsert(Row),
    /// Deleted since the previous link (also rows created and deleted in between).
    Deleted(Uuid),
}

/// One page of changes; the last page carries the delta link to store.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChangePage {
    pub changes: Vec<Change>,
    pub delta_link: Option<String>,
    /// The link to the following page (`@odata.nextLink`, verbatim). Storing it once this page's rows
    /// are processed lets an interrupted initial read continue with [`Client::resume_changes`] instead of
    /// starting over; `None` on the last page.
    pub next_link: Option<String>,
}

/// Splits a delta response's rows into upserts and deletions.
pub(crate) fn to_changes(rows: Vec<Row>, operation: &str) -> Result<Vec<Change>, DataverseError> {
    rows.into_iter()
        .map(|row| {
            let deleted = row
                .get("@odata.context")
                .and_then(Value::as_str)
                .is_some_and(|c| c.ends_with("$deletedEntity"))
                || row.get("reason").and_then(Value::as_str) == Some("deleted");
            if !deleted {
                return Ok(Change::Upsert(row));
            }
            row.get("id")
                .and_then(Value::as_str)
                .and_then(|id| Uuid::parse_str(id).ok())
                .map(Change::Deleted)
                .ok_or_else(|| {
                    DataverseError::new(
                        ErrorKind::Decode,
                        operation,
                        "a deleted-entity entry has no valid id",
                    )
                })
        })
        .collect()
}

/// True when a failed delta request means "this link is no good any more".
fn is_dead_link(err: &DataverseError) -> bool {
    if err.kind() == ErrorKind::ChangeTokenExpired {
        return true;
    }
    // An invalid or foreign token is reported as a plain bad request naming the token.
    err.kind() == ErrorKind::BadRequest && {
        let message = err.message().to_ascii_lowercase();
        message.contains("deltatoken")
            || message.contains("delta token")
            || message.contains("version stamp")
    }
}

impl Client {
    /// Starts change tracking: every current row of `entity_set` (only `select` columns; empty = all) as
    /// [`Change::Upsert`], then the delta link on the last page.
    pub fn track_changes<S: AsRef<str>>(
        &self,
        entity_set: &str,
        select: &[S],
        page_size: Option<u32>,
    ) -> impl Stream<Item = Result<ChangePage, DataverseError>> + Send + 'static {
        let operation = format!("track changes {entity_set}");
        let columns: Vec<&str> = select.iter().map(AsRef::as_ref).collect();
        let first = check_name(entity_set, "entity set", &operation).and_then(|()| {
            for column in &columns {
                check_name(column, "column", &operation)?;
            }
            let relative = if columns.is_empty() {
                entity_set.to_string()
            } else {
                format!("{entity_set}?$select={}", columns.join(","))
            };
            self.url(&relative, &operation)
        });
        self.change_pages(first, page_size, true, operation)
    }

    /// Continues an initial read of change tracking from a stored [`ChangePage::next_link`] (its paging
    /// cookie carries the read's snapshot, so the delta link at the end covers every change made since the
    /// read began). A link the service no longer accepts fails like any request (the caller starts over
    /// with [`Client::track_changes`]).
    pub fn resume_changes(
        &self,
        next_link: &str,
        page_size: Option<u32>,
    ) -> impl Stream<Item = Result<ChangePage, DataverseError>> + Send + 'static {
        let operation = "resume change tracking".to_string();
        let first = self.link(next_link, &operation);
        self.change_pages(first, page_size, true, operation)
    }

    /// Changes since a stored delta link; the last page carries the next link to store.
    pub fn follow_delta(
        &self,
        delta_link: &str,
        page_size: Option<u32>,
    ) -> impl Stream<Item = Result<ChangePage, DataverseError>> + Send + 'static {
        let operation = "follow delta link".to_string();
        let first = self
            .link(delta_link, &operation)
            .map_err(|e| e.with_kind(ErrorKind::ChangeTokenExpired));
        self.change_pages(first, page_size, false, operation)
    }

    fn change_pages(
        &self,
        first: Result<url::Url, DataverseError>,
        page_size: Option<u32>,
        initial: bool,
        operation: String,
    ) -> impl Stream<Item = Result<ChangePage, DataverseError>> + Send + 'static {
        let size = page_size.unwrap_or(self.inner.config.default_page_size);
        // The track-changes preference is what asks for a delta link at the end of the read.
        let prefer = prefer(Some(size), None, true);
        let client = self.clone();
        futures::stream::try_unfold(Some(first), move |next| {
            let client = client.clone();
            let prefer = prefer.clone();
            let operation = operation.clone();
            async move {
                let url = match next {
                    None => return Ok(None),
                    Some(url) => url?,
                };
                let collection: Collection = match client
                    .get_collection(url, prefer.as_deref(), &operation)
                    .await
                {
                    Ok(c) => c,
                    Err(err) if !initial && is_dead_link(&err) => {
                        return Err(err.with_kind(ErrorKind::ChangeTokenExpired));
                    }
                    Err(err) => return Err(err),
                };
                let following = match (&collection.next_link, &collection.delta_link) {
                    (Some(next), _) => Some(client.link(next, &operation)),
                    (None, Some(_)) => None,
                    (None, None) => {
                        return Err(DataverseError::new(
                            ErrorKind::Decode,
                            &operation,
                            "the last page carries no @odata.deltaLink (is change tracking enabled for the table?)",
                        ));
                    }
                };
                let page = ChangePage {
                    changes: to_changes(collection.value, &operation)?,
                    delta_link: if collection.next_link.is_none() {
                        collection.delta_link
                    } else {
                        None
                    },
                    next_link: collection.next_link,
                };
                Ok(Some((page, following)))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rows(value: Value) -> Vec<Row> {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn deleted_entities_become_deletions() {
        let id = "5c5c5c5c-0000-0000-0000-000000000001";
        let changes = to_changes(
            rows(json!([
                {"@odata.etag":"W/\"5\"","name":"a","accountid":"5c5c5c5c-0000-0000-0000-000000000002"},
                {"@odata.context":"https://o/api/data/v9.2/$metadata#accounts/$deletedEntity","id":id,"reason":"deleted"},
                {"id":id,"reason":"deleted"}
            ])),
            "t",
        )
        .unwrap();
        assert!(matches!(&changes[0], Change::Upsert(row) if row["name"] == "a"));
        assert_eq!(changes[1], Change::Deleted(Uuid::parse_str(id).unwrap()));
        assert_eq!(changes[2], Change::Deleted(Uuid::parse_str(id).unwrap()));
    }

    #[test]
    fn a_deletion_without_id_is_a_decode_error() {
        let err = to_changes(rows(json!([{"reason":"deleted","id":"nope"}])), "t").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode);
    }

    #[test]
    fn dead_links_are_recognised() {
        let expired = DataverseError::from_response(
            "d",
            400,
            Some("0x80044352".into()),
            Some(
                "Version stamp associated with the client has expired. Please perform a full sync."
                    .into(),
            ),
            None,
        );
        assert!(is_dead_link(&expired));
        let invalid = DataverseError::from_response(
            "d",
            400,
            Some("0x0".into()),
            Some("Invalid $deltatoken".into()),
            None,
        );
        assert!(is_dead_link(&invalid));
        let other = DataverseError::from_response(
            "d",
            400,
            Some("0x0".into()),
            Some("Bad column".into()),
            None,
        );
        assert!(!is_dead_link(&other));
    }
}
