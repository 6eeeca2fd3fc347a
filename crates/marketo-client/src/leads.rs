//! Lead database: describe, field schema, query, sync, delete, merge.

use serde_json::{Value, json};

use crate::client::{Call, Client};
use crate::error::Error;
use crate::paging::Pager;
use crate::types::{
    LeadDescription, LeadField, NewLeadField, Record, RecordResult, SchemaField, SyncAction,
};

/// Marketo's cap on `filterValues`, records per sync/delete, and `batchSize`.
pub const MAX_BATCH: usize = 300;
/// Marketo's cap on losing lead ids per merge (1080 beyond it).
pub const MAX_MERGE_IDS: usize = 25;

/// Options of Sync Leads beyond the records.
#[derive(Clone, Debug, Default)]
pub struct SyncLeadsOptions {
    pub action: SyncAction,
    /// `email` when `None`; `id` only with `updateOnly`.
    pub lookup_field: Option<String>,
    /// Only applies to createOnly/createOrUpdate.
    pub partition_name: Option<String>,
}

impl Client {
    /// `GET /rest/v1/leads/describe.json` (every field with REST/SOAP names; superseded by describe2).
    pub async fn describe_leads(&self) -> Result<Vec<LeadField>, Error> {
        Ok(self
            .execute(&Call::get("/rest/v1/leads/describe.json"))
            .await?
            .result)
    }

    /// `GET /rest/v1/leads/describe2.json`: fields plus the searchable keys usable as `filterType`.
    pub async fn describe_leads2(&self) -> Result<LeadDescription, Error> {
        let page = self
            .execute::<LeadDescription>(&Call::get("/rest/v1/leads/describe2.json"))
            .await?;
        page.result.into_iter().next().ok_or_else(|| Error::Decode {
            path: "/rest/v1/leads/describe2.json".into(),
            message: "empty result".into(),
        })
    }

    /// `GET /rest/v1/leads/schema/fields.json`, paged.
    pub fn lead_schema_fields(&self) -> Pager<SchemaField> {
        Pager::new(
            self.clone(),
            Call::get("/rest/v1/leads/schema/fields.json")
                .query("batchSize", MAX_BATCH.to_string()),
        )
    }

    /// `GET /rest/v1/leads/schema/fields/{name}.json`; `None` when the field does not exist.
    pub async fn lead_schema_field(&self, name: &str) -> Result<Option<SchemaField>, Error> {
        check_path_segment(name)?;
        let path = format!("/rest/v1/leads/schema/fields/{name}.json");
        match self.execute::<SchemaField>(&Call::get(path)).await {
            Ok(page) => Ok(page.result.into_iter().next()),
            // 702 "no data" / 1006 "field not found" / 610 "resource not found" all mean: absent.
            Err(Error::Api { code, .. }) if matches!(code.as_str(), "702" | "1006" | "610") => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// `POST /rest/v1/leads/schema/fields.json`: creates custom fields; one result per input, in order.
    pub async fn create_lead_fields(
        &self,
        fields: &[NewLeadField],
    ) -> Result<Vec<RecordResult>, Error> {
        let mut results = Vec::with_capacity(fields.len());
        // The service creates at most 100 fields per call.
        for chunk in fields.chunks(100) {
            let call =
                Call::post("/rest/v1/leads/schema/fields.json").json(json!({ "input": chunk }));
            let page = self.execute::<RecordResult>(&call).await?;
            results.extend(expect_one_per_input(&call.path, chunk.len(), page.result)?);
        }
        Ok(results)
    }

    /// `GET /rest/v1/leads.json?filterType=..&filterValues=..`, paged. At most 300 values.
    pub fn leads_by_filter(
        &self,
        filter_type: &str,
        filter_values: &[impl AsRef<str>],
        fields: &[&str],
        batch_size: Option<usize>,
    ) -> Result<Pager<Record>, Error> {
        let call = filter_call(
            "/rest/v1/leads.json",
            filter_type,
            filter_values,
            fields,
            batch_size,
        )?;
        Ok(Pager::new(self.clone(), call))
    }

    /// `GET /rest/v1/lead/{id}.json`; `None` when no such lead.
    pub async fn lead_by_id(&self, id: i64, fields: &[&str]) -> Result<Option<Record>, Error> {
        let mut call = Call::get(format!("/rest/v1/lead/{id}.json"));
        if !fields.is_empty() {
            call = call.query("fields", fields.join(","));
        }
        Ok(self
            .execute::<Record>(&call)
            .await?
            .result
            .into_iter()
            .next())
    }

    /// `POST /rest/v1/leads.json`: upserts `leads`, split into calls of `batch_size` (≤ 300).
    /// Results are per record, in input order. If a later call fails, earlier calls stay applied and their
    /// results are not returned: pass ≤ `batch_size` records per call when each outcome must be recorded.
    pub async fn sync_leads(
        &self,
        leads: &[Record],
        options: &SyncLeadsOptions,
    ) -> Result<Vec<RecordResult>, Error> {
        let mut results = Vec::with_capacity(leads.len());
        for chunk in leads.chunks(self.config().batch_size) {
            let mut body = serde_json::Map::new();
            body.insert(
                "action".into(),
                serde_json::to_value(options.action).unwrap_or(Value::Null),
            );
            body.insert(
                "lookupField".into(),
                Value::String(
                    options
                        .lookup_field
                        .clone()
                        .unwrap_or_else(|| "email".into()),
                ),
            );
            if let Some(partition) = &options.partition_name {
                body.insert("partitionName".into(), Value::String(partition.clone()));
            }
            body.insert("asyncProcessing".into(), Value::Bool(false));
            body.insert(
                "input".into(),
                Value::Array(chunk.iter().cloned().map(Value::Object).collect()),
            );
            let call = Call::post("/rest/v1/leads.json").json(Value::Object(body));
            let page = self.execute::<RecordResult>(&call).await?;
            results.extend(expect_one_per_input(&call.path, chunk.len(), page.result)?);
        }
        Ok(results)
    }

    /// `POST /rest/v1/leads/delete.json` with `{"input":[{"id":..}]}`, in calls of ≤ 300 ids.
    pub async fn delete_leads(&self, ids: &[i64]) -> Result<Vec<RecordResult>, Error> {
        let mut results = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(self.config().batch_size) {
            let input: Vec<Value> = chunk.iter().map(|id| json!({ "id": id })).collect();
            let call = Call::post("/rest/v1/leads/delete.json").json(json!({ "input": input }));
            let page = self.execute::<RecordResult>(&call).await?;
            results.extend(expect_one_per_input(&call.path, chunk.len(), page.result)?);
        }
        Ok(results)
    }

    /// `POST /rest/v1/leads/{winner}/merge.json?leadIds=..`: merges up to 25 losers into `winner`.
    pub async fn merge_leads(
        &self,
        winner: i64,
        losers: &[i64],
        merge_in_crm: bool,
    ) -> Result<(), Error> {
        if losers.is_empty() || losers.len() > MAX_MERGE_IDS {
            return Err(Error::InvalidInput(format!(
                "merge takes 1 to {MAX_MERGE_IDS} losing lead ids, got {}",
                losers.len()
            )));
        }
        let ids: Vec<String> = losers.iter().map(i64::to_string).collect();
        let call = Call::post(format!("/rest/v1/leads/{winner}/merge.json"))
            .query("leadIds", ids.join(","))
            .query("mergeInCRM", merge_in_crm.to_string());
        self.execute::<Value>(&call).await.map(|_| ())
    }
}

/// Builds a `filterType`/`filterValues` query, validating the 300-value cap before spending a call.
pub(crate) fn filter_call(
    path: &str,
    filter_type: &str,
    filter_values: &[impl AsRef<str>],
    fields: &[&str],
    batch_size: Option<usize>,
) -> Result<Call, Error> {
    if filter_values.is_empty() || filter_values.len() > MAX_BATCH {
        return Err(Error::InvalidInput(format!(
            "filterValues takes 1 to {MAX_BATCH} values, got {}",
            filter_values.len()
        )));
    }
    if filter_values.iter().any(|v| v.as_ref().contains(',')) {
        return Err(Error::InvalidInput(
            "filterValues are comma-separated on the wire, so a value cannot contain a comma"
                .into(),
        ));
    }
    let values: Vec<&str> = filter_values.iter().map(AsRef::as_ref).collect();
    let mut call = Call::get(path)
        .query("filterType", filter_type)
        .query("filterValues", values.join(","));
    if !fields.is_empty() {
        call = call.query("fields", fields.join(","));
    }
    let batch = batch_size.unwrap_or(MAX_BATCH).clamp(1, MAX_BATCH);
    Ok(call.query("batchSize", batch.to_string()))
}

/// Record-level results must line up with the input; anything else means we cannot attribute outcomes.
pub(crate) fn expect_one_per_input(
    path: &str,
    inputs: usize,
    results: Vec<RecordResult>,
) -> Result<Vec<RecordResult>, Error> {
    if results.len() != inputs {
        return Err(Error::Decode {
            path: path.to_owned(),
            message: format!("{} results for {inputs} input records", results.len()),
        });
    }
    Ok(results)
}

/// Names that go into a URL path must be plain identifiers.
pub(crate) fn check_path_segment(name: &str) -> Result<(), Error> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(Error::InvalidInput(format!(
            "{name:?} is not a valid API name"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_values_are_capped_and_joined() {
        let values: Vec<String> = (0..300).map(|i| i.to_string()).collect();
        let call = filter_call("/rest/v1/leads.json", "id", &values, &["email"], None).unwrap();
        assert!(
            call.query
                .iter()
                .any(|(k, v)| k == "filterValues" && v.starts_with("0,1,2"))
        );
        assert!(call.query.contains(&("batchSize".into(), "300".into())));
        let too_many: Vec<String> = (0..301).map(|i| i.to_string()).collect();
        assert!(matches!(
            filter_call("/x", "id", &too_many, &[], None),
            Err(Error::InvalidInput(_))
        ));
        assert!(filter_call("/x", "email", &["a,b@x.com"], &[], None).is_err());
        let none: [&str; 0] = [];
        assert!(filter_call("/x", "id", &none, &[], None).is_err());
    }

    #[test]
    fn results_must_match_inputs() {
        let r: Vec<RecordResult> =
            serde_json::from_str(r#"[{"id":1,"status":"created"}]"#).unwrap();
        assert!(expect_one_per_input("/p", 1, r.clone()).is_ok());
        assert!(matches!(
            expect_one_per_input("/p", 2, r),
            Err(Error::Decode { .. })
        ));
    }

    #[test]
    fn path_segments_are_identifiers() {
        assert!(check_path_segment("msftId").is_ok());
        assert!(check_path_segment("a_c").is_ok());
        assert!(check_path_segment("../x").is_err());
        assert!(check_path_segment("").is_err());
    }
}
