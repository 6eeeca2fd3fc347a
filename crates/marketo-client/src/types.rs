//! Wire records shared by several endpoints. Unknown properties are ignored so new service fields never
//! break decoding; properties documented as sometimes missing are `Option`.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::envelope::{ApiError, opt_i64_lenient, opt_string_or_number};

/// A lead/company/opportunity record: REST field name → value (schemas are per instance).
pub type Record = serde_json::Map<String, Value>;

/// Per-record outcome of a sync/delete/field-create call, in input order.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordResult {
    #[serde(default, deserialize_with = "opt_i64_lenient")]
    pub id: Option<i64>,
    #[serde(default, deserialize_with = "opt_i64_lenient")]
    pub seq: Option<i64>,
    #[serde(
        default,
        rename = "marketoGUID",
        deserialize_with = "opt_string_or_number"
    )]
    pub marketo_guid: Option<String>,
    /// Field-create results name the field instead of an id.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub status: Option<RecordStatus>,
    /// Why a record was skipped; the spec misnames this `reason`, so accept both.
    #[serde(default, alias = "reason")]
    pub reasons: Vec<ApiError>,
}

impl RecordResult {
    /// Skipped (or no status but reasons, as Push Lead answers).
    pub fn is_skipped(&self) -> bool {
        matches!(self.status, Some(RecordStatus::Skipped))
            || (self.status.is_none() && !self.reasons.is_empty())
    }

    /// The first reason code, e.g. `1004` (not found) or `1005` (already exists).
    pub fn reason_code(&self) -> Option<&str> {
        self.reasons.first().map(|r| r.code.as_str())
    }
}

/// `status` of a record result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordStatus {
    Created,
    Updated,
    Deleted,
    Skipped,
    Added,
    Removed,
    Other(String),
}

impl<'de> Deserialize<'de> for RecordStatus {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let s = String::deserialize(de)?;
        Ok(match s.as_str() {
            "created" => Self::Created,
            "updated" => Self::Updated,
            "deleted" => Self::Deleted,
            "skipped" => Self::Skipped,
            "added" => Self::Added,
            "removed" => Self::Removed,
            _ => Self::Other(s),
        })
    }
}

/// `action` of lead and object sync calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SyncAction {
    CreateOnly,
    UpdateOnly,
    #[default]
    CreateOrUpdate,
    /// Leads only: always inserts.
    CreateDuplicate,
}

/// One field of `leads/describe.json`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeadField {
    pub id: i64,
    pub display_name: String,
    pub data_type: String,
    #[serde(default)]
    pub length: Option<u32>,
    /// Absent when the field cannot be used through REST.
    #[serde(default)]
    pub rest: Option<ApiName>,
    #[serde(default)]
    pub soap: Option<ApiName>,
}

/// `rest`/`soap` block of a described lead field.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiName {
    pub name: String,
    #[serde(default)]
    pub read_only: bool,
}

/// `leads/describe2.json` result (one entry, "API Lead").
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeadDescription {
    pub name: String,
    /// Each inner list is one key usable as `filterType` (compound keys have several names).
    #[serde(default)]
    pub searchable_fields: Vec<Vec<String>>,
    #[serde(default)]
    pub fields: Vec<DescribedField>,
}

/// A field of describe2 or of an object description.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribedField {
    pub name: String,
    #[serde(default)]
    pub display_name: Option<String>,
    pub data_type: String,
    #[serde(default)]
    pub length: Option<u32>,
    #[serde(default)]
    pub updateable: Option<bool>,
    #[serde(default)]
    pub crm_managed: Option<bool>,
}

/// One entry of `leads/schema/fields.json`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaField {
    pub name: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub data_type: String,
    #[serde(default)]
    pub length: Option<u32>,
    #[serde(default)]
    pub is_hidden: Option<bool>,
    #[serde(default)]
    pub is_html_encoding_in_email: Option<bool>,
    #[serde(default)]
    pub is_sensitive: Option<bool>,
    #[serde(default)]
    pub is_custom: Option<bool>,
    #[serde(default)]
    pub is_api_created: Option<bool>,
}

/// Input of Create Lead Fields: `displayName`, `name` and `dataType` are required.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewLeadField {
    pub display_name: String,
    pub name: String,
    pub data_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub length: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_hidden: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_html_encoding_in_email: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_sensitive: Option<bool>,
}

/// An activity, lead change (types 12/13) or deleted lead (37).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Activity {
    /// Being retired by Adobe; may be missing.
    #[serde(default, deserialize_with = "opt_i64_lenient")]
    pub id: Option<i64>,
    #[serde(
        default,
        rename = "marketoGUID",
        deserialize_with = "opt_string_or_number"
    )]
    pub marketo_guid: Option<String>,
    #[serde(default, deserialize_with = "opt_i64_lenient")]
    pub lead_id: Option<i64>,
    /// As sent (`2015-03-17T00:18:40Z`; old instances `+0000`): see [`Activity::date`].
    pub activity_date: String,
    pub activity_type_id: i64,
    #[serde(default, deserialize_with = "opt_i64_lenient")]
    pub campaign_id: Option<i64>,
    #[serde(default, deserialize_with = "opt_i64_lenient")]
    pub primary_attribute_value_id: Option<i64>,
    #[serde(default)]
    pub primary_attribute_value: Option<Value>,
    /// Lead changes only: the changed fields.
    #[serde(default)]
    pub fields: Vec<FieldChange>,
    #[serde(default)]
    pub attributes: Vec<Attribute>,
}

impl Activity {
    /// `activityDate` parsed; accepts `Z` and `+0000` offsets.
    pub fn date(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        parse_marketo_datetime(&self.activity_date)
    }

    /// The value of the attribute named `name` (e.g. `Source`, `Api Method Name`).
    pub fn attribute(&self, name: &str) -> Option<&Value> {
        self.attributes
            .iter()
            .find(|a| a.name == name)
            .map(|a| &a.value)
    }
}

/// Parses the datetime forms Marketo emits.
pub fn parse_marketo_datetime(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .or_else(|_| chrono::DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%z"))
        .or_else(|_| chrono::DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|d| d.with_timezone(&chrono::Utc))
}

/// One changed field of a Change Data Value activity.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldChange {
    #[serde(default, deserialize_with = "opt_i64_lenient")]
    pub id: Option<i64>,
    pub name: String,
    #[serde(default)]
    pub new_value: Value,
    #[serde(default)]
    pub old_value: Value,
}

/// `{name, value, apiName?}` of an activity.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attribute {
    pub name: String,
    #[serde(default)]
    pub value: Value,
    #[serde(default)]
    pub api_name: Option<String>,
}

/// An entry of `activities/types.json`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivityType {
    pub id: i64,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub api_name: Option<String>,
    #[serde(default)]
    pub primary_attribute: Option<AttributeType>,
    #[serde(default)]
    pub attributes: Vec<AttributeType>,
}

/// Name and data type of an activity attribute.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttributeType {
    pub name: String,
    #[serde(default)]
    pub data_type: Option<String>,
}

/// Describe result of companies, opportunities, roles.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectDescription {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    pub id_field: String,
    #[serde(default)]
    pub dedupe_fields: Vec<String>,
    #[serde(default)]
    pub searchable_fields: Vec<Vec<String>>,
    #[serde(default)]
    pub fields: Vec<DescribedField>,
}

/// A bulk export job as every bulk call returns it.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportJob {
    pub export_id: String,
    #[serde(default)]
    pub format: Option<String>,
    pub status: ExportStatus,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub queued_at: Option<String>,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
    #[serde(default, deserialize_with = "opt_i64_lenient")]
    pub number_of_records: Option<i64>,
    #[serde(default, deserialize_with = "opt_i64_lenient")]
    pub file_size: Option<i64>,
    /// `sha256:<hex>` once completed.
    #[serde(default)]
    pub file_checksum: Option<String>,
    #[serde(default)]
    pub error_msg: Option<String>,
}

/// Bulk job lifecycle; the cancelled spelling varies between docs, examples and spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExportStatus {
    Created,
    Queued,
    Processing,
    Completed,
    Failed,
    Cancelled,
    Other(String),
}

impl ExportStatus {
    /// No further transition will happen.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Created => "Created",
            Self::Queued => "Queued",
            Self::Processing => "Processing",
            Self::Completed => "Completed",
            Self::Failed => "Failed",
            Self::Cancelled => "Cancelled",
            Self::Other(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for ExportStatus {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let s = String::deserialize(de)?;
        Ok(match s.to_ascii_lowercase().as_str() {
            "created" => Self::Created,
            "queued" => Self::Queued,
            "processing" => Self::Processing,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            "cancelled" | "canceled" => Self::Cancelled,
            _ => Self::Other(s),
        })
    }
}

/// A day of `stats/usage.json`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub date: String,
    #[serde(default)]
    pub total: u64,
    #[serde(default)]
    pub users: Vec<UserUsage>,
}

/// Calls of one API user on a day.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserUsage {
    pub user_id: String,
    #[serde(default)]
    pub count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_results_with_reasons_and_lenient_ids() {
        let results: Vec<RecordResult> = serde_json::from_str(
            r#"[{"id":50,"status":"created"},
                {"status":"skipped","reasons":[{"code":"1005","message":"Lead already exists"}]},
                {"seq":2,"marketoGUID":"abc","status":"updated"},
                {"id":"7","reason":[{"code":"1013","message":"Object not found"}],"status":"skipped"},
                {"name":"msftId","status":"created"}]"#,
        )
        .unwrap();
        assert_eq!(results[0].id, Some(50));
        assert_eq!(results[0].status, Some(RecordStatus::Created));
        assert!(results[1].is_skipped());
        assert_eq!(results[1].reason_code(), Some("1005"));
        assert_eq!(results[2].marketo_guid.as_deref(), Some("abc"));
        assert_eq!(results[3].id, Some(7));
        assert_eq!(results[3].reason_code(), Some("1013"));
        assert_eq!(results[4].name.as_deref(), Some("msftId"));
    }

    #[test]
    fn lead_change_record() {
        let a: Activity = serde_json::from_str(
            r#"{"id":1078,"marketoGUID":"1078","leadId":775,"activityDate":"2014-09-17T22:31:49Z",
            "activityTypeId":13,"fields":[{"id":48,"name":"firstName","newValue":"B","oldValue":null}],
            "attributes":[{"name":"Source","value":"Web service API"},{"name":"Lead ID","value":775}]}"#,
        )
        .unwrap();
        assert_eq!(a.marketo_guid.as_deref(), Some("1078"));
        assert_eq!(a.fields[0].old_value, Value::Null);
        assert_eq!(
            a.attribute("Source"),
            Some(&Value::String("Web service API".into()))
        );
        assert!(a.date().is_some());
        assert!(parse_marketo_datetime("2015-03-17T00:18:40+0000").is_some());
    }

    #[test]
    fn export_status_spellings() {
        for (text, status) in [
            ("\"Cancelled\"", ExportStatus::Cancelled),
            ("\"Canceled\"", ExportStatus::Cancelled),
            ("\"cancelled\"", ExportStatus::Cancelled),
            ("\"Completed\"", ExportStatus::Completed),
        ] {
            assert_eq!(serde_json::from_str::<ExportStatus>(text).unwrap(), status);
        }
        assert!(ExportStatus::Failed.is_terminal() && !ExportStatus::Queued.is_terminal());
    }

    #[test]
    fn sync_action_wire_names() {
        assert_eq!(
            serde_json::to_string(&SyncAction::CreateOrUpdate).unwrap(),
            "\"createOrUpdate\""
        );
        assert_eq!(
            serde_json::to_string(&SyncAction::CreateDuplicate).unwrap(),
            "\"createDuplicate\""
        );
    }
}
