//! Collection queries as a stream of pages: one page in memory at a time, `@odata.nextLink` followed
//! verbatim with the same `Prefer: odata.maxpagesize`.

use futures::Stream;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value};
use url::Url;

use crate::client::{ApiRequest, Client, headers};
use crate::error::{DataverseError, ErrorKind};
use crate::path::{check_name, encode_component};

/// One row as the service sends it (columns, `@odata.etag`, annotations).
pub type Row = Map<String, Value>;

/// `$select`, `$filter`, … for [`Client::query`]. Values are sent as written (OData syntax), encoded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueryOptions {
    pub select: Vec<String>,
    pub filter: Option<String>,
    pub orderby: Option<String>,
    pub expand: Option<String>,
    /// Ignored by the service when a page size is also sent; use for "first N" queries.
    pub top: Option<u32>,
    /// Ask for `@odata.count` (reported on the first page).
    pub count: bool,
    /// `Prefer: odata.maxpagesize`; `None` = the client's default. Not sent when `top` is set.
    pub page_size: Option<u32>,
    /// `Prefer: odata.include-annotations="…"`, e.g. `OData.Community.Display.V1.FormattedValue` or `*`.
    pub annotations: Option<String>,
}

impl QueryOptions {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn select<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.select = columns.into_iter().map(Into::into).collect();
        self
    }
    pub fn filter(mut self, filter: impl Into<String>) -> Self {
        self.filter = Some(filter.into());
        self
    }
    pub fn orderby(mut self, orderby: impl Into<String>) -> Self {
        self.orderby = Some(orderby.into());
        self
    }
    pub fn expand(mut self, expand: impl Into<String>) -> Self {
        self.expand = Some(expand.into());
        self
    }
    pub fn top(mut self, top: u32) -> Self {
        self.top = Some(top);
        self
    }
    pub fn count(mut self) -> Self {
        self.count = true;
        self
    }
    pub fn page_size(mut self, size: u32) -> Self {
        self.page_size = Some(size);
        self
    }
    pub fn annotations(mut self, annotations: impl Into<String>) -> Self {
        self.annotations = Some(annotations.into());
        self
    }

    /// The query string (without `?`); empty when no option is set.
    pub fn query_string(&self) -> String {
        let mut parts = Vec::new();
        if !self.select.is_empty() {
            parts.push(format!(
                "$select={}",
                encode_component(&self.select.join(",")).replace("%2C", ",")
            ));
        }
        if let Some(filter) = &self.filter {
            parts.push(format!("$filter={}", encode_component(filter)));
        }
        if let Some(orderby) = &self.orderby {
            parts.push(format!(
                "$orderby={}",
                encode_component(orderby).replace("%2C", ",")
            ));
        }
        if let Some(expand) = &self.expand {
            parts.push(format!("$expand={}", encode_component(expand)));
        }
        if let Some(top) = self.top {
            parts.push(format!("$top={top}"));
        }
        if self.count {
            parts.push("$count=true".to_string());
        }
        parts.join("&")
    }
}

/// One page of a query.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Page {
    pub rows: Vec<Row>,
    /// `@odata.count` when `count` was asked (first page).
    pub count: Option<u64>,
    /// Where the next page is; `None` on the last page.
    pub next_link: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct Collection {
    #[serde(default)]
    pub value: Vec<Row>,
    #[serde(rename = "@odata.nextLink")]
    pub next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink")]
    pub delta_link: Option<String>,
    #[serde(rename = "@odata.count")]
    pub count: Option<u64>,
}

/// Builds the `Prefer` header value from its parts.
pub(crate) fn prefer(
    page_size: Option<u32>,
    annotations: Option<&str>,
    track_changes: bool,
) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(annotations) = annotations {
        parts.push(format!(
            "odata.include-annotations=\"{}\"",
            annotations.replace('"', "")
        ));
    }
    if let Some(size) = page_size {
        parts.push(format!("odata.maxpagesize={size}"));
    }
    if track_changes {
        parts.push("odata.track-changes".to_string());
    }
    (!parts.is_empty()).then(|| parts.join(","))
}

impl Client {
    /// Pages of `entity_set` matching `options`, fetched lazily as the stream is polled.
    pub fn query(
        &self,
        entity_set: &str,
        options: &QueryOptions,
    ) -> impl Stream<Item = Result<Page, DataverseError>> + Send + 'static {
        let operation = format!("query {entity_set}");
        let first = check_name(entity_set, "entity set", &operation).and_then(|()| {
            let qs = options.query_string();
            let relative = if qs.is_empty() {
                entity_set.to_string()
            } else {
                format!("{entity_set}?{qs}")
            };
            self.url(&relative, &operation)
        });
        let page_size = match options.top {
            Some(_) if options.page_size.is_none() => None,
            _ => Some(
                options
                    .page_size
                    .unwrap_or(self.inner.config.default_page_size),
            ),
        };
        let prefer = prefer(page_size, options.annotations.as_deref(), false);
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
                let collection = client
                    .get_collection(url, prefer.as_deref(), &operation)
                    .await?;
                let following = collection
                    .next_link
                    .as_ref()
                    .map(|link| client.link(link, &operation));
                let page = Page {
                    rows: collection.value,
                    count: collection.count,
                    next_link: collection.next_link,
                };
                Ok(Some((page, following)))
            }
        })
    }

    /// The first row matching `options` (asks for `$top=1`), or `None`.
    pub async fn query_first(
        &self,
        entity_set: &str,
        options: &QueryOptions,
    ) -> Result<Option<Row>, DataverseError> {
        use futures::TryStreamExt;
        let mut options = options.clone();
        options.top = Some(1);
        options.page_size = None;
        let stream = self.query(entity_set, &options);
        futures::pin_mut!(stream);
        Ok(stream
            .try_next()
            .await?
            .and_then(|page| page.rows.into_iter().next()))
    }

    pub(crate) async fn get_collection(
        &self,
        url: Url,
        prefer: Option<&str>,
        operation: &str,
    ) -> Result<Collection, DataverseError> {
        let headers = match prefer {
            Some(p) => headers(&[("prefer", p.to_string())], operation)?,
            None => HeaderMap::new(),
        };
        let response = self
            .execute(ApiRequest {
                method: Method::GET,
                url,
                headers,
                body: None,
                operation: operation.to_string(),
                idempotent: true,
                raw: false,
            })
            .await?;
        serde_json::from_slice(&response.body).map_err(|e| {
            DataverseError::new(
                ErrorKind::Decode,
                operation,
                format!("the collection response is not valid: {e}"),
            )
            .with_source(e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_use_odata_option_names() {
        let options = QueryOptions::new()
            .select(["name", "accountid"])
            .filter("name eq 'A&B' and revenue gt 10")
            .orderby("name asc,createdon desc")
            .top(5)
            .count();
        assert_eq!(
            options.query_string(),
            "$select=name,accountid&$filter=name%20eq%20'A%26B'%20and%20revenue%20gt%2010\
             &$orderby=name%20asc,createdon%20desc&$top=5&$count=true"
        );
        assert_eq!(QueryOptions::new().query_string(), "");
    }

    #[test]
    fn prefer_joins_preferences_with_commas() {
        assert_eq!(
            prefer(Some(50), None, false).as_deref(),
            Some("odata.maxpagesize=50")
        );
        assert_eq!(
            prefer(Some(10), Some("*"), true).as_deref(),
            Some("odata.include-annotations=\"*\",odata.maxpagesize=10,odata.track-changes")
        );
        assert_eq!(prefer(None, None, false), None);
    }

    #[test]
    fn collections_parse_links_and_counts() {
        let body = r#"{"@odata.context":"x","@odata.count":3,"value":[{"name":"a"}],"@odata.nextLink":"https://o/api/data/v9.2/accounts?$skiptoken=1"}"#;
        let c: Collection = serde_json::from_str(body).unwrap();
        assert_eq!(c.value.len(), 1);
        assert_eq!(c.count, Some(3));
        assert!(c.next_link.unwrap().ends_with("$skiptoken=1"));
        assert!(c.delta_link.is_none());
    }
}
