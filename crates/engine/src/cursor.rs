//! Change-capture positions as stored in the state store.
//!
//! Dataverse (scope = the entity's logical name, side `crm`): `load:<pages>` or `load:<pages>:<next link>`
//! while the initial load is in progress (pages committed so far, and the `@odata.nextLink` that reads
//! the page after them), then `delta:<link>` (the opaque delta link, verbatim). Marketo (side `marketo`):
//! the paging tokens of the [`LEAD_CHANGES`] and [`DELETED_LEADS`] streams.

/// Scope of the Marketo lead-change stream's paging token.
pub const LEAD_CHANGES: &str = "leadchanges";
/// Scope of the Marketo deleted-leads stream's paging token.
pub const DELETED_LEADS: &str = "deletedleads";

/// Where an entity's Dataverse change capture stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CrmPosition {
    /// Initial load not started, or `pages` pages of it committed; `next` continues the read after them
    /// (absent in positions written before resumable loads: those re-read from the start).
    Loading { pages: u64, next: Option<String> },
    /// Initial load done: changes since this delta link.
    Delta(String),
}

impl CrmPosition {
    pub fn parse(stored: Option<&str>) -> CrmPosition {
        match stored {
            Some(s) if s.starts_with("delta:") => {
                CrmPosition::Delta(s["delta:".len()..].to_owned())
            }
            Some(s) if s.starts_with("load:") => {
                let rest = &s["load:".len()..];
                let (pages, next) = match rest.split_once(':') {
                    Some((pages, link)) if !link.is_empty() => (pages, Some(link.to_owned())),
                    Some((pages, _)) => (pages, None),
                    None => (rest, None),
                };
                CrmPosition::Loading {
                    pages: pages.parse().unwrap_or(0),
                    next,
                }
            }
            _ => CrmPosition::Loading {
                pages: 0,
                next: None,
            },
        }
    }

    pub fn encode(&self) -> String {
        match self {
            CrmPosition::Loading { pages, next: None } => format!("load:{pages}"),
            CrmPosition::Loading {
                pages,
                next: Some(link),
            } => format!("load:{pages}:{link}"),
            CrmPosition::Delta(link) => format!("delta:{link}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip() {
        for p in [
            CrmPosition::Loading {
                pages: 0,
                next: None,
            },
            CrmPosition::Loading {
                pages: 17,
                next: None,
            },
            CrmPosition::Loading {
                pages: 3,
                next: Some("https://x/api/data/v9.2/leads?$select=a&$skiptoken=%3Ccookie%20pagenumber=%224%22%20/%3E".into()),
            },
            CrmPosition::Delta("https://x/api/data/v9.2/leads?$deltatoken=1!2".into()),
        ] {
            assert_eq!(CrmPosition::parse(Some(&p.encode())), p);
        }
        assert_eq!(
            CrmPosition::parse(None),
            CrmPosition::Loading {
                pages: 0,
                next: None
            }
        );
        assert_eq!(
            CrmPosition::parse(Some("load:5")),
            CrmPosition::Loading {
                pages: 5,
                next: None
            }
        );
    }
}
