//! Neutral representations of the records and change events the sync moves between the two services.
//!
//! The protocol clients parse wire JSON into these types; everything downstream (mapping, echo rules,
//! planning) works on them only, so it never depends on either service's envelope.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// The Dynamics entities mdsync syncs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CrmEntity {
    Lead,
    Contact,
    Account,
    Opportunity,
    SystemUser,
}

impl CrmEntity {
    pub const ALL: [CrmEntity; 5] = [
        CrmEntity::Lead,
        CrmEntity::Contact,
        CrmEntity::Account,
        CrmEntity::Opportunity,
        CrmEntity::SystemUser,
    ];

    /// The Dataverse logical name (`lead`, `systemuser`, …), also used as the config table name.
    pub fn logical_name(self) -> &'static str {
        match self {
            CrmEntity::Lead => "lead",
            CrmEntity::Contact => "contact",
            CrmEntity::Account => "account",
            CrmEntity::Opportunity => "opportunity",
            CrmEntity::SystemUser => "systemuser",
        }
    }

    /// The Web API entity set (`leads`, `opportunities`, …).
    pub fn entity_set(self) -> &'static str {
        match self {
            CrmEntity::Lead => "leads",
            CrmEntity::Contact => "contacts",
            CrmEntity::Account => "accounts",
            CrmEntity::Opportunity => "opportunities",
            CrmEntity::SystemUser => "systemusers",
        }
    }

    /// The primary key attribute (`leadid`, …).
    pub fn primary_key(self) -> &'static str {
        match self {
            CrmEntity::Lead => "leadid",
            CrmEntity::Contact => "contactid",
            CrmEntity::Account => "accountid",
            CrmEntity::Opportunity => "opportunityid",
            CrmEntity::SystemUser => "systemuserid",
        }
    }

    /// The Marketo object a record of this entity becomes.
    pub fn marketo_object(self) -> MarketoObject {
        match self {
            CrmEntity::Lead | CrmEntity::Contact => MarketoObject::Person,
            CrmEntity::Account => MarketoObject::Company,
            CrmEntity::Opportunity => MarketoObject::Opportunity,
            CrmEntity::SystemUser => MarketoObject::SalesPerson,
        }
    }

    /// Leads and contacts sync both ways; everything else only from Dynamics (Marketo can't create them).
    pub fn is_two_way(self) -> bool {
        matches!(self, CrmEntity::Lead | CrmEntity::Contact)
    }

    /// The person's `msftType` value for a lead or contact.
    pub fn msft_type(self) -> Option<&'static str> {
        match self {
            CrmEntity::Lead => Some("Lead"),
            CrmEntity::Contact => Some("Contact"),
            _ => None,
        }
    }
}

impl fmt::Display for CrmEntity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.logical_name())
    }
}

/// Error for an entity name that is not one mdsync syncs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown entity `{0}` (expected lead, contact, account, opportunity or systemuser)")]
pub struct UnknownEntity(pub String);

impl FromStr for CrmEntity {
    type Err = UnknownEntity;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CrmEntity::ALL
            .into_iter()
            .find(|e| {
                e.logical_name().eq_ignore_ascii_case(s) || e.entity_set().eq_ignore_ascii_case(s)
            })
            .ok_or_else(|| UnknownEntity(s.to_owned()))
    }
}

/// The Marketo object kinds records land in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MarketoObject {
    Person,
    Company,
    Opportunity,
    SalesPerson,
}

impl MarketoObject {
    pub fn as_str(self) -> &'static str {
        match self {
            MarketoObject::Person => "person",
            MarketoObject::Company => "company",
            MarketoObject::Opportunity => "opportunity",
            MarketoObject::SalesPerson => "salesperson",
        }
    }
}

impl fmt::Display for MarketoObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MarketoObject {
    type Err = UnknownEntity;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            MarketoObject::Person,
            MarketoObject::Company,
            MarketoObject::Opportunity,
            MarketoObject::SalesPerson,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
        .ok_or_else(|| UnknownEntity(s.to_owned()))
    }
}

/// Which service a value, fingerprint or cursor belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Crm,
    Marketo,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Crm => "crm",
            Side::Marketo => "marketo",
        }
    }
}

impl FromStr for Side {
    type Err = UnknownEntity;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "crm" => Ok(Side::Crm),
            "marketo" => Ok(Side::Marketo),
            other => Err(UnknownEntity(other.to_owned())),
        }
    }
}

/// The direction a change flows in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flow {
    ToMarketo,
    ToDynamics,
}

impl Flow {
    pub fn as_str(self) -> &'static str {
        match self {
            Flow::ToMarketo => "to_marketo",
            Flow::ToDynamics => "to_dynamics",
        }
    }
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Dataverse row as the sync sees it: system columns lifted out, mapped attributes in `fields`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CrmRecord {
    pub entity: CrmEntity,
    pub id: Uuid,
    /// `_modifiedby_value`: who wrote the row last (the seed's echo rule keys on it).
    pub modified_by: Option<Uuid>,
    pub modified_on: Option<DateTime<Utc>>,
    /// `versionnumber`.
    pub version: Option<i64>,
    /// Every other property of the row, annotations removed, keyed by logical name (`_x_value` for lookups).
    pub fields: Map<String, Value>,
}

/// Why a Dataverse row could not be turned into a [`CrmRecord`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("{entity} row is not a JSON object")]
    NotAnObject { entity: CrmEntity },
    #[error("{entity} row has no valid `{key}` (a GUID is required)")]
    MissingId {
        entity: CrmEntity,
        key: &'static str,
    },
    #[error("{entity} {id}: `{field}` is not valid: {reason}")]
    BadSystemField {
        entity: CrmEntity,
        id: Uuid,
        field: &'static str,
        reason: String,
    },
}

impl CrmRecord {
    /// Parses one row of a Web API response (plain query or delta) into the neutral shape.
    ///
    /// Annotations (`@odata.etag`, `…@OData.Community.Display.V1.FormattedValue`) are dropped: they are
    /// derived from the values and would only produce false changes.
    pub fn from_web_api(entity: CrmEntity, row: &Value) -> Result<Self, RecordError> {
        let obj = row.as_object().ok_or(RecordError::NotAnObject { entity })?;
        let key = entity.primary_key();
        let id = obj
            .get(key)
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or(RecordError::MissingId { entity, key })?;
        let modified_by = match obj.get("_modifiedby_value") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                Some(Uuid::parse_str(s).map_err(|e| RecordError::BadSystemField {
                    entity,
                    id,
                    field: "_modifiedby_value",
                    reason: e.to_string(),
                })?)
            }
            Some(other) => {
                return Err(RecordError::BadSystemField {
                    entity,
                    id,
                    field: "_modifiedby_value",
                    reason: format!("expected a GUID string, got {other}"),
                });
            }
        };
        let modified_on = match obj.get("modifiedon") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(
                DateTime::parse_from_rfc3339(s)
                    .map_err(|e| RecordError::BadSystemField {
                        entity,
                        id,
                        field: "modifiedon",
                        reason: e.to_string(),
                    })?
                    .with_timezone(&Utc),
            ),
            Some(other) => {
                return Err(RecordError::BadSystemField {
                    entity,
                    id,
                    field: "modifiedon",
                    reason: format!("expected a date-time string, got {other}"),
                });
            }
        };
        // versionnumber is Edm.Int64; some serializers quote 64-bit integers, so accept both.
        let version = match obj.get("versionnumber") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.parse().ok(),
            Some(_) => None,
        };
        let fields = obj
            .iter()
            .filter(|(k, _)| {
                !k.contains('@')
                    && k.as_str() != key
                    && !matches!(
                        k.as_str(),
                        "_modifiedby_value" | "modifiedon" | "versionnumber"
                    )
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(CrmRecord {
            entity,
            id,
            modified_by,
            modified_on,
            version,
            fields,
        })
    }
}

/// A Marketo person (lead record) by its Marketo id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MarketoPerson {
    pub id: i64,
    pub fields: Map<String, Value>,
}

impl MarketoPerson {
    pub fn email(&self) -> Option<&str> {
        self.fields
            .get("email")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }
}

/// A Marketo company, keyed by `externalCompanyId` (the account id).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MarketoCompany {
    pub external_company_id: String,
    pub fields: Map<String, Value>,
}

/// A Marketo opportunity, keyed by `externalOpportunityId` (the opportunity id).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MarketoOpportunity {
    pub external_opportunity_id: String,
    pub fields: Map<String, Value>,
}

/// A Marketo opportunity role: the compound dedupe key `externalOpportunityId`, `leadId`, `role`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketoRole {
    pub external_opportunity_id: String,
    pub lead_id: i64,
    pub role: String,
    pub is_primary: bool,
}

/// One change read from Dataverse change tracking.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CrmChange {
    /// A created or updated row (delta rows carry the selected columns, not a diff).
    Upsert(CrmRecord),
    /// A `$deletedEntity` entry.
    Delete { entity: CrmEntity, id: Uuid },
}

impl CrmChange {
    pub fn entity(&self) -> CrmEntity {
        match self {
            CrmChange::Upsert(r) => r.entity,
            CrmChange::Delete { entity, .. } => *entity,
        }
    }

    pub fn id(&self) -> Uuid {
        match self {
            CrmChange::Upsert(r) => r.id,
            CrmChange::Delete { id, .. } => *id,
        }
    }
}

/// Who made a Marketo change, from the activity's attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeActor {
    /// mdsync's own API user (its writes must never travel back to Dynamics).
    SyncUser,
    /// A marketer, a form, a flow step or another integration.
    Other,
}

/// An activity attribute `{name, value}` as Marketo returns it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActivityAttribute {
    pub name: String,
    pub value: Value,
}

impl ChangeActor {
    /// Classifies a Change Data Value / New Lead activity.
    ///
    /// Marketo stamps API writes with `Api Method Name`, `Modifying User` (the API user's email) and
    /// `Request Id`. A change is mdsync's own exactly when `Modifying User` equals (case-insensitively) one
    /// of `api_users`; another integration's API write has the attributes too but a different user, so it
    /// is a real change. Without `Modifying User` nothing proves the write was ours: it counts as `Other`
    /// and the fingerprints decide (see [`crate::echo`]).
    pub fn from_attributes(attributes: &[ActivityAttribute], api_users: &[String]) -> ChangeActor {
        let user = attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case("Modifying User"))
            .and_then(|a| a.value.as_str());
        match user {
            Some(u)
                if api_users
                    .iter()
                    .any(|k| k.trim().eq_ignore_ascii_case(u.trim())) =>
            {
                ChangeActor::SyncUser
            }
            _ => ChangeActor::Other,
        }
    }
}

/// The latest value of one Marketo field in this cycle and who set it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MarketoFieldChange {
    pub value: Value,
    pub actor: ChangeActor,
    pub at: Option<DateTime<Utc>>,
}

/// One person's changes read from Marketo (lead changes folded per person, or a Delete Lead activity).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MarketoChange {
    /// Changed fields (REST names) with their latest value; `fields` only lists fields that changed.
    Upsert {
        person_id: i64,
        fields: BTreeMap<String, MarketoFieldChange>,
    },
    /// Delete Lead (37).
    Delete { person_id: i64 },
}

impl MarketoChange {
    pub fn person_id(&self) -> i64 {
        match self {
            MarketoChange::Upsert { person_id, .. } | MarketoChange::Delete { person_id } => {
                *person_id
            }
        }
    }
}

/// One Change Data Value field entry of a lead-change activity, already classified by actor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeadChangeActivity {
    pub lead_id: i64,
    pub at: Option<DateTime<Utc>>,
    pub actor: ChangeActor,
    /// `fields[].name` → `fields[].newValue`.
    pub fields: Vec<(String, Value)>,
}

/// Folds lead-change activities (in activity order) into one [`MarketoChange`] per person, keeping the last
/// value of each field and who set it. Output order: first appearance of each person.
pub fn fold_lead_changes(
    activities: impl IntoIterator<Item = LeadChangeActivity>,
) -> Vec<MarketoChange> {
    let mut order: Vec<i64> = Vec::new();
    let mut by_person: std::collections::HashMap<i64, BTreeMap<String, MarketoFieldChange>> =
        std::collections::HashMap::new();
    for activity in activities {
        let entry = by_person.entry(activity.lead_id).or_insert_with(|| {
            order.push(activity.lead_id);
            BTreeMap::new()
        });
        for (name, value) in activity.fields {
            entry.insert(
                name,
                MarketoFieldChange {
                    value,
                    actor: activity.actor,
                    at: activity.at,
                },
            );
        }
    }
    order
        .into_iter()
        .map(|person_id| MarketoChange::Upsert {
            fields: by_person.remove(&person_id).unwrap_or_default(),
            person_id,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn web_api_row_lifts_system_columns_and_drops_annotations() {
        let row = json!({
            "@odata.etag": "W/\"1234\"",
            "leadid": "00000000-0000-0000-0000-000000000001",
            "_modifiedby_value": "00000000-0000-0000-0000-0000000000aa",
            "_modifiedby_value@OData.Community.Display.V1.FormattedValue": "Sync User",
            "modifiedon": "2024-05-01T10:00:00Z",
            "versionnumber": 1234,
            "firstname": "Ada",
            "statecode": 0,
            "statecode@OData.Community.Display.V1.FormattedValue": "Open"
        });
        let r = CrmRecord::from_web_api(CrmEntity::Lead, &row).expect("valid row");
        assert_eq!(r.id, Uuid::from_u128(1));
        assert_eq!(r.modified_by, Some(Uuid::from_u128(0xaa)));
        assert_eq!(r.version, Some(1234));
        assert_eq!(
            r.modified_on.map(|d| d.to_rfc3339()),
            Some("2024-05-01T10:00:00+00:00".into())
        );
        assert_eq!(r.fields.len(), 2);
        assert_eq!(r.fields["firstname"], json!("Ada"));
        assert_eq!(r.fields["statecode"], json!(0));
    }

    #[test]
    fn web_api_row_errors_name_the_problem() {
        let e =
            CrmRecord::from_web_api(CrmEntity::Contact, &json!({"firstname": "x"})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "contact row has no valid `contactid` (a GUID is required)"
        );
        let e = CrmRecord::from_web_api(CrmEntity::Contact, &json!([1])).unwrap_err();
        assert_eq!(
            e,
            RecordError::NotAnObject {
                entity: CrmEntity::Contact
            }
        );
        let e = CrmRecord::from_web_api(
            CrmEntity::Lead,
            &json!({"leadid": "00000000-0000-0000-0000-000000000001", "modifiedon": "yesterday"}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("`modifiedon` is not valid"), "{e}");
    }

    #[test]
    fn entity_names_round_trip() {
        for e in CrmEntity::ALL {
            assert_eq!(e.logical_name().parse::<CrmEntity>(), Ok(e));
            assert_eq!(e.entity_set().parse::<CrmEntity>(), Ok(e));
        }
        assert!("campaign".parse::<CrmEntity>().is_err());
        assert_eq!(CrmEntity::Lead.msft_type(), Some("Lead"));
        assert_eq!(CrmEntity::Account.msft_type(), None);
        assert!(CrmEntity::Contact.is_two_way());
        assert!(!CrmEntity::Opportunity.is_two_way());
    }

    #[test]
    fn actor_is_sync_user_only_for_our_modifying_user() {
        let ours = vec!["mdsync@123-ABC-456.apiuser".to_owned()];
        let attrs = |user: &str| {
            vec![
                ActivityAttribute {
                    name: "Api Method Name".into(),
                    value: json!("syncLead"),
                },
                ActivityAttribute {
                    name: "Modifying User".into(),
                    value: json!(user),
                },
            ]
        };
        assert_eq!(
            ChangeActor::from_attributes(&attrs("mdsync@123-abc-456.apiuser"), &ours),
            ChangeActor::SyncUser
        );
        assert_eq!(
            ChangeActor::from_attributes(&attrs("other@123-abc-456.apiuser"), &ours),
            ChangeActor::Other
        );
        let form = vec![ActivityAttribute {
            name: "Source".into(),
            value: json!("Web form fillout"),
        }];
        assert_eq!(
            ChangeActor::from_attributes(&form, &ours),
            ChangeActor::Other
        );
    }

    #[test]
    fn lead_changes_fold_to_last_value_per_field() {
        let a = |lead_id, actor, fields: Vec<(&str, Value)>| LeadChangeActivity {
            lead_id,
            at: None,
            actor,
            fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        };
        let folded = fold_lead_changes(vec![
            a(7, ChangeActor::Other, vec![("firstName", json!("A"))]),
            a(3, ChangeActor::Other, vec![("phone", json!("1"))]),
            a(
                7,
                ChangeActor::SyncUser,
                vec![("firstName", json!("B")), ("lastName", json!("L"))],
            ),
        ]);
        assert_eq!(folded.len(), 2);
        assert_eq!(folded[0].person_id(), 7);
        let MarketoChange::Upsert { fields, .. } = &folded[0] else {
            panic!("expected upsert")
        };
        assert_eq!(fields["firstName"].value, json!("B"));
        assert_eq!(fields["firstName"].actor, ChangeActor::SyncUser);
        assert_eq!(fields.len(), 2);
        assert_eq!(folded[1].person_id(), 3);
    }
}
