//! Companies, opportunities and opportunity roles: one shared describe/query/sync/delete pattern.

use serde_json::{Value, json};

use crate::client::{Call, Client};
use crate::error::Error;
use crate::leads::{MAX_BATCH, expect_one_per_input, filter_call};
use crate::paging::Pager;
use crate::types::{ObjectDescription, Record, RecordResult, SyncAction};

/// A Lead Database object with the shared endpoint pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    Companies,
    Opportunities,
    OpportunityRoles,
    /// Sales persons (CRM owners), keyed by `externalSalesPersonId`.
    SalesPersons,
}

impl ObjectKind {
    /// The path without `.json`, e.g. `/rest/v1/opportunities/roles`.
    pub fn base_path(self) -> &'static str {
        match self {
            Self::Companies => "/rest/v1/companies",
            Self::Opportunities => "/rest/v1/opportunities",
            Self::OpportunityRoles => "/rest/v1/opportunities/roles",
            Self::SalesPersons => "/rest/v1/salespersons",
        }
    }
}

/// `dedupeBy` of sync and `deleteBy` of delete.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyKind {
    #[default]
    DedupeFields,
    /// Sync: only with `updateOnly`.
    IdField,
}

impl KeyKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::DedupeFields => "dedupeFields",
            Self::IdField => "idField",
        }
    }
}

impl Client {
    /// `GET <object>/describe.json`.
    pub async fn describe_object(&self, kind: ObjectKind) -> Result<ObjectDescription, Error> {
        let path = format!("{}/describe.json", kind.base_path());
        let page = self
            .execute::<ObjectDescription>(&Call::get(path.clone()))
            .await?;
        page.result.into_iter().next().ok_or_else(|| Error::Decode {
            path,
            message: "empty result".into(),
        })
    }

    /// `GET <object>.json?filterType=..&filterValues=..`, paged (≤ 300 values).
    pub fn query_objects(
        &self,
        kind: ObjectKind,
        filter_type: &str,
        filter_values: &[impl AsRef<str>],
        fields: &[&str],
        batch_size: Option<usize>,
    ) -> Result<Pager<Record>, Error> {
        let path = format!("{}.json", kind.base_path());
        let call = filter_call(&path, filter_type, filter_values, fields, batch_size)?;
        Ok(Pager::new(self.clone(), call))
    }

    /// `POST <object>.json?_method=GET` with a JSON body: lookups by a compound key (opportunity roles'
    /// `externalOpportunityId`+`leadId`+`role`), which cannot be expressed as `filterValues`.
    pub fn query_objects_by_keys(
        &self,
        kind: ObjectKind,
        filter_type: &str,
        keys: &[Record],
        fields: &[&str],
    ) -> Result<Pager<Record>, Error> {
        if keys.is_empty() || keys.len() > MAX_BATCH {
            return Err(Error::InvalidInput(format!(
                "a compound-key query takes 1 to {MAX_BATCH} keys, got {}",
                keys.len()
            )));
        }
        let mut body = json!({ "filterType": filter_type, "input": keys });
        if !fields.is_empty() {
            body["fields"] = json!(fields);
        }
        let call = Call::post(format!("{}.json", kind.base_path()))
            .query("_method", "GET")
            .json(body);
        Ok(Pager::new(self.clone(), call))
    }

    /// `POST <object>.json`: create/update in calls of ≤ 300; per-record results in input order.
    pub async fn sync_objects(
        &self,
        kind: ObjectKind,
        action: SyncAction,
        dedupe_by: KeyKind,
        records: &[Record],
    ) -> Result<Vec<RecordResult>, Error> {
        if action == SyncAction::CreateDuplicate {
            return Err(Error::InvalidInput(
                "createDuplicate exists only for leads".into(),
            ));
        }
        let path = format!("{}.json", kind.base_path());
        let mut results = Vec::with_capacity(records.len());
        for chunk in records.chunks(self.config().batch_size) {
            let call = Call::post(path.clone()).json(json!({
                "action": action,
                "dedupeBy": dedupe_by.as_str(),
                "input": chunk,
            }));
            let page = self.execute::<RecordResult>(&call).await?;
            results.extend(expect_one_per_input(&path, chunk.len(), page.result)?);
        }
        Ok(results)
    }

    /// `POST <object>/delete.json` with `{"deleteBy":..,"input":[..]}` in calls of ≤ 300.
    pub async fn delete_objects(
        &self,
        kind: ObjectKind,
        delete_by: KeyKind,
        keys: &[Record],
    ) -> Result<Vec<RecordResult>, Error> {
        let path = format!("{}/delete.json", kind.base_path());
        let mut results = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(self.config().batch_size) {
            let call = Call::post(path.clone()).json(json!({
                "deleteBy": delete_by.as_str(),
                "input": chunk,
            }));
            let page = self.execute::<RecordResult>(&call).await?;
            results.extend(expect_one_per_input(&path, chunk.len(), page.result)?);
        }
        Ok(results)
    }

    /// `GET /rest/v1/stats/usage.json`: today's calls per API user (instance-wide, so other integrations too).
    pub async fn usage(&self) -> Result<Vec<crate::types::Usage>, Error> {
        Ok(self
            .execute(&Call::get("/rest/v1/stats/usage.json"))
            .await?
            .result)
    }

    /// Aligns the local budget with the instance's count for today (`result[0].total`), as tap-marketo does.
    /// Returns the total. Conservative: other integrations' calls count against our budget too.
    pub async fn sync_budget_with_usage(&self) -> Result<u64, Error> {
        let usage = self.usage().await?;
        let total = usage.first().map(|u| u.total).unwrap_or(0);
        // The usage call itself was counted locally and may not be in `total` yet.
        self.budget().set_used(total.max(self.budget().used()));
        Ok(total)
    }
}

/// A `Value` helper for callers building compound keys.
pub fn key(pairs: &[(&str, Value)]) -> Record {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}
