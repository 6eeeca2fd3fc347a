//! Page-at-a-time readers. Memory is bounded by one page (≤ 300 records), never by the result size.
//!
//! Two paging styles exist: filter queries return `nextPageToken` only while more rows exist; the
//! incremental activity endpoints always return a token and `moreResult`, and may return short or empty
//! pages while `moreResult` is true (the service scans activity blocks), so they are followed until
//! `moreResult` is false and the last token is kept for the next run.

use std::marker::PhantomData;

use futures::Stream;
use serde::de::DeserializeOwned;

use crate::client::{Call, Client};
use crate::error::Error;

/// Reads a filter query (`leads.json`, `companies.json`, schema fields, ...) page by page.
#[derive(Debug)]
pub struct Pager<T> {
    client: Client,
    call: Call,
    next: Option<String>,
    done: bool,
    _record: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Pager<T> {
    pub(crate) fn new(client: Client, call: Call) -> Self {
        Self {
            client,
            call,
            next: None,
            done: false,
            _record: PhantomData,
        }
    }

    /// The next non-empty page, or `None` when the query is exhausted. Empty pages that still carry a
    /// token are followed transparently.
    pub async fn next_page(&mut self) -> Result<Option<Vec<T>>, Error> {
        while !self.done {
            let mut call = self.call.clone();
            if let Some(token) = &self.next {
                call.query.push(("nextPageToken".into(), token.clone()));
            }
            let page = self.client.execute::<T>(&call).await?;
            match page.next_page_token {
                // A repeated token would loop forever; treat it as the end.
                Some(token) if self.next.as_ref() != Some(&token) => self.next = Some(token),
                _ => self.done = true,
            }
            if !page.result.is_empty() {
                return Ok(Some(page.result));
            }
        }
        Ok(None)
    }

    /// The records one at a time as a stream (still fetched a page at a time).
    pub fn into_stream(self) -> impl Stream<Item = Result<T, Error>> {
        futures::stream::try_unfold(
            (self, std::collections::VecDeque::new()),
            |(mut pager, mut buffer)| async move {
                loop {
                    if let Some(record) = buffer.pop_front() {
                        return Ok(Some((record, (pager, buffer))));
                    }
                    match pager.next_page().await? {
                        Some(page) => buffer.extend(page),
                        None => return Ok(None),
                    }
                }
            },
        )
    }
}

/// One page of an incremental endpoint.
#[derive(Clone, Debug)]
pub struct ActivityPage<T> {
    /// Possibly empty even when more pages follow.
    pub records: Vec<T>,
    /// The token to resume after this page (store it once the records are processed).
    pub next_page_token: String,
    pub more_result: bool,
}

/// Follows an incremental endpoint (`activities.json`, `leadchanges.json`, `deletedleads.json`) from a
/// paging token until `moreResult` is false.
#[derive(Debug)]
pub struct ActivityPager<T> {
    client: Client,
    call: Call,
    token: String,
    done: bool,
    pages: u64,
    _record: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> ActivityPager<T> {
    pub(crate) fn new(client: Client, call: Call, token: String) -> Self {
        Self {
            client,
            call,
            token,
            done: false,
            pages: 0,
            _record: PhantomData,
        }
    }

    /// The next page, empty pages included (so callers can checkpoint progress through sparse ranges);
    /// `None` once a page said `moreResult:false`.
    pub async fn next_page(&mut self) -> Result<Option<ActivityPage<T>>, Error> {
        if self.done {
            return Ok(None);
        }
        let mut call = self.call.clone();
        call.query
            .push(("nextPageToken".into(), self.token.clone()));
        let page = self.client.execute::<T>(&call).await?;
        self.pages += 1;
        // The service always returns a token here; keep the old one if a page ever omits it.
        if let Some(token) = page.next_page_token {
            self.token = token;
        }
        if !page.more_result {
            self.done = true;
        }
        Ok(Some(ActivityPage {
            records: page.result,
            next_page_token: self.token.clone(),
            more_result: page.more_result,
        }))
    }

    /// Calls `each` with every non-empty page until the end and returns the token to store for the next
    /// run. On error, pages already passed to `each` stay processed; resume from the last token they gave.
    pub async fn drain<F>(mut self, mut each: F) -> Result<String, Error>
    where
        F: FnMut(Vec<T>) -> Result<(), Error>,
    {
        while let Some(page) = self.next_page().await? {
            if !page.records.is_empty() {
                each(page.records)?;
            }
        }
        Ok(self.token)
    }

    /// The token after the last page read (the starting token before any).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Pages fetched so far (empty ones included).
    pub fn pages_read(&self) -> u64 {
        self.pages
    }

    /// Whether a page with `moreResult:false` was read.
    pub fn is_done(&self) -> bool {
        self.done
    }
}
