//! Incremental reads: paging tokens, lead changes, activities, deleted leads, activity types.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::client::{Call, Client};
use crate::error::Error;
use crate::leads::MAX_BATCH;
use crate::paging::ActivityPager;
use crate::types::{Activity, ActivityType};

/// Caps of the activity endpoints.
pub const MAX_ACTIVITY_TYPE_IDS: usize = 10;
pub const MAX_LEAD_IDS: usize = 30;

/// Optional narrowing of activity and lead-change reads.
#[derive(Clone, Debug, Default)]
pub struct ActivityFilter {
    /// Static list whose members' activities to return.
    pub list_id: Option<i64>,
    /// At most 30 lead ids.
    pub lead_ids: Vec<i64>,
    /// Records per page (≤ 300; the default is 300).
    pub batch_size: Option<usize>,
}

impl ActivityFilter {
    fn apply(&self, mut call: Call) -> Result<Call, Error> {
        if self.lead_ids.len() > MAX_LEAD_IDS {
            return Err(Error::InvalidInput(format!(
                "leadIds takes at most {MAX_LEAD_IDS} ids, got {}",
                self.lead_ids.len()
            )));
        }
        if let Some(list_id) = self.list_id {
            call = call.query("listId", list_id.to_string());
        }
        if !self.lead_ids.is_empty() {
            call = call.query("leadIds", join(&self.lead_ids));
        }
        let batch = self.batch_size.unwrap_or(MAX_BATCH).clamp(1, MAX_BATCH);
        Ok(call.query("batchSize", batch.to_string()))
    }
}

impl Client {
    /// `GET /rest/v1/activities/pagingtoken.json?sinceDatetime=..`: the token to start incremental reads at.
    pub async fn paging_token(&self, since: DateTime<Utc>) -> Result<String, Error> {
        let call = Call::get("/rest/v1/activities/pagingtoken.json").query(
            "sinceDatetime",
            since.to_rfc3339_opts(SecondsFormat::Secs, true),
        );
        let page = self.execute::<serde_json::Value>(&call).await?;
        page.next_page_token.ok_or_else(|| Error::Decode {
            path: call.path.clone(),
            message: "no nextPageToken in the paging token response".into(),
        })
    }

    /// `GET /rest/v1/activities/leadchanges.json`: New Lead and Change Data Value activities limited to
    /// `fields`, from `token` until `moreResult` is false.
    pub fn lead_changes(
        &self,
        token: impl Into<String>,
        fields: &[&str],
        filter: &ActivityFilter,
    ) -> Result<ActivityPager<Activity>, Error> {
        if fields.is_empty() {
            return Err(Error::InvalidInput(
                "lead changes need at least one field".into(),
            ));
        }
        let call = filter.apply(
            Call::get("/rest/v1/activities/leadchanges.json").query("fields", fields.join(",")),
        )?;
        Ok(ActivityPager::new(self.clone(), call, token.into()))
    }

    /// `GET /rest/v1/activities.json` for up to 10 activity types.
    pub fn activities(
        &self,
        token: impl Into<String>,
        activity_type_ids: &[i64],
        filter: &ActivityFilter,
    ) -> Result<ActivityPager<Activity>, Error> {
        if activity_type_ids.is_empty() || activity_type_ids.len() > MAX_ACTIVITY_TYPE_IDS {
            return Err(Error::InvalidInput(format!(
                "activityTypeIds takes 1 to {MAX_ACTIVITY_TYPE_IDS} ids, got {}",
                activity_type_ids.len()
            )));
        }
        let call = filter.apply(
            Call::get("/rest/v1/activities.json").query("activityTypeIds", join(activity_type_ids)),
        )?;
        Ok(ActivityPager::new(self.clone(), call, token.into()))
    }

    /// `GET /rest/v1/activities/deletedleads.json`: Delete Lead (37) activities from `token`.
    pub fn deleted_leads(
        &self,
        token: impl Into<String>,
        batch_size: Option<usize>,
    ) -> ActivityPager<Activity> {
        let batch = batch_size.unwrap_or(MAX_BATCH).clamp(1, MAX_BATCH);
        let call = Call::get("/rest/v1/activities/deletedleads.json")
            .query("batchSize", batch.to_string());
        ActivityPager::new(self.clone(), call, token.into())
    }

    /// `GET /rest/v1/activities/types.json` (not paged; cache it).
    pub async fn activity_types(&self) -> Result<Vec<ActivityType>, Error> {
        Ok(self
            .execute(&Call::get("/rest/v1/activities/types.json"))
            .await?
            .result)
    }
}

fn join(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_caps_and_query() {
        let filter = ActivityFilter {
            list_id: Some(7),
            lead_ids: vec![1, 2],
            batch_size: Some(1000),
        };
        let call = filter.apply(Call::get("/x")).unwrap();
        assert_eq!(
            call.query,
            vec![
                ("listId".to_string(), "7".to_string()),
                ("leadIds".to_string(), "1,2".to_string()),
                ("batchSize".to_string(), "300".to_string()),
            ]
        );
        let too_many = ActivityFilter {
            lead_ids: (0..31).collect(),
            ..Default::default()
        };
        assert!(too_many.apply(Call::get("/x")).is_err());
    }
}
