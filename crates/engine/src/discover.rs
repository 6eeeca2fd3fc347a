//! What the two services actually have: the sync identities, each side's field types, and the mapping
//! narrowed to fields that exist on both sides (a mapped field missing on one side is reported, not sent).

use std::collections::{BTreeMap, HashMap, HashSet};

use mdsync_dataverse_client::Client as CrmClient;
use mdsync_marketo_client::{Client as MarketoClient, ObjectKind};
use mdsync_sync_core::convert::{CrmFieldType, MarketoFieldType, OptionValue};
use mdsync_sync_core::mapping::{
    ConflictPolicy, Direction, EntityMapping, FieldMapping, MSFT_ID, MSFT_IS_DELETED, MSFT_TYPE,
    Mappings,
};
use mdsync_sync_core::plan::{MASTER, MERGED, Schema};
use mdsync_sync_core::record::{CrmEntity, MarketoObject};
use serde_json::Value;
use uuid::Uuid;

use crate::error::EngineError;
use crate::settings::EngineSettings;

/// The order entities load in: companies before the persons that point at them, persons before the
/// opportunity roles that point at them.
pub const LOAD_ORDER: [CrmEntity; 5] = [
    CrmEntity::SystemUser,
    CrmEntity::Account,
    CrmEntity::Lead,
    CrmEntity::Contact,
    CrmEntity::Opportunity,
];

/// A record's owner (a system user), sent as the person's `externalSalesPersonId` when owners sync.
pub const OWNER: &str = "_ownerid_value";

/// The contact's account, sent as the person's `externalCompanyId` (marketo-dynamics-sync.md §3).
pub const PARENT_CUSTOMER: &str = "_parentcustomerid_value";
/// A contact's originating lead (Qualify).
pub const ORIGINATING_LEAD: &str = "_originatingleadid_value";
/// An opportunity's potential customer (roles).
pub const CUSTOMER: &str = "_customerid_value";

/// The result of looking at both services before syncing.
#[derive(Clone, Debug)]
pub struct Discovery {
    pub crm_sync_user: Uuid,
    pub marketo_api_users: Vec<String>,
    pub schema: Schema,
    /// The configured mapping narrowed to fields both sides have.
    pub mappings: Mappings,
    /// Entities that will sync, in [`LOAD_ORDER`].
    pub entities: Vec<CrmEntity>,
    /// Columns to read per entity (`$select`).
    pub select: HashMap<CrmEntity, Vec<String>>,
    /// The filter column, when configured and present on the entity.
    pub filter_column: HashMap<CrmEntity, String>,
    /// What was left out and why (fields missing on one side, unsupported entities).
    pub notes: Vec<String>,
}

/// One Dataverse attribute as the metadata API describes it.
struct CrmAttribute {
    logical_name: String,
    ty: Option<CrmFieldType>,
    lookup: bool,
}

/// The options of an expanded `OptionSet` (`Options[].Value` and the user-localized label).
fn option_values(option_set: &Value) -> Vec<OptionValue> {
    option_set
        .get("Options")
        .and_then(Value::as_array)
        .map(|opts| {
            opts.iter()
                .filter_map(|o| {
                    let value = o.get("Value")?.as_i64()?;
                    let label = o
                        .pointer("/Label/UserLocalizedLabel/Label")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    Some(OptionValue { value, label })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A choice column's options come from `options` (read through the typed casts), never from the
/// attribute list itself: the real service leaves `OptionSet` out there.
fn crm_type(
    attr: &Value,
    options: &HashMap<String, Vec<OptionValue>>,
) -> (Option<CrmFieldType>, bool) {
    let kind = attr
        .get("AttributeType")
        .and_then(Value::as_str)
        .unwrap_or("");
    match kind {
        "String" | "Memo" => (
            Some(CrmFieldType::String {
                max_length: attr
                    .get("MaxLength")
                    .and_then(Value::as_u64)
                    .map(|n| n as usize),
            }),
            false,
        ),
        "Picklist" | "State" | "Status" => {
            let options = attr
                .get("LogicalName")
                .and_then(Value::as_str)
                .and_then(|name| options.get(name))
                .cloned()
                .unwrap_or_default();
            (Some(CrmFieldType::Choice { options }), false)
        }
        "Boolean" => (Some(CrmFieldType::Boolean), false),
        "Integer" => (Some(CrmFieldType::Integer), false),
        "BigInt" => (Some(CrmFieldType::BigInt), false),
        "Decimal" | "Double" | "Money" => (Some(CrmFieldType::Decimal), false),
        "DateTime" => {
            let date_only = attr.get("Format").and_then(Value::as_str) == Some("DateOnly");
            (
                Some(if date_only {
                    CrmFieldType::DateOnly
                } else {
                    CrmFieldType::DateTime
                }),
                false,
            )
        }
        "Uniqueidentifier" => (Some(CrmFieldType::Guid), false),
        "Lookup" | "Customer" | "Owner" => (Some(CrmFieldType::Guid), true),
        _ => (None, false),
    }
}

async fn crm_attributes(
    crm: &CrmClient,
    entity: CrmEntity,
) -> Result<Vec<CrmAttribute>, EngineError> {
    let path = format!(
        "EntityDefinitions(LogicalName='{}')/Attributes",
        entity.logical_name()
    );
    let (body, options) = tokio::try_join!(
        async { crm.get_json(&path).await.map_err(EngineError::from) },
        crm_option_sets(crm, entity)
    )?;
    let items = body
        .get("value")
        .and_then(Value::as_array)
        .ok_or_else(|| EngineError::Protocol("attribute metadata without `value`".into()))?;
    Ok(items
        .iter()
        .filter_map(|a| {
            let logical_name = a.get("LogicalName")?.as_str()?.to_owned();
            let (ty, lookup) = crm_type(a, &options);
            Some(CrmAttribute {
                logical_name,
                ty,
                lookup,
            })
        })
        .collect())
}

/// The metadata types whose `OptionSet` the engine reads (the choice columns plus two-option columns).
const OPTION_SET_CASTS: [&str; 4] = [
    "PicklistAttributeMetadata",
    "StatusAttributeMetadata",
    "StateAttributeMetadata",
    "BooleanAttributeMetadata",
];

/// Each choice column's options, read the way the real Web API serves them: through a cast to the
/// attribute's metadata type with `$expand=OptionSet` (the plain `Attributes` list omits option sets).
async fn crm_option_sets(
    crm: &CrmClient,
    entity: CrmEntity,
) -> Result<HashMap<String, Vec<OptionValue>>, EngineError> {
    // One round trip for all four casts (discovery latency matters: every run starts with it).
    let bodies = futures::future::try_join_all(OPTION_SET_CASTS.map(|cast| async move {
        // Two-option columns carry `TrueOption`/`FalseOption`, not `Options`.
        let options = if cast == "BooleanAttributeMetadata" {
            "TrueOption,FalseOption"
        } else {
            "Options"
        };
        let body = crm
            .get_json(&format!(
                "EntityDefinitions(LogicalName='{}')/Attributes/Microsoft.Dynamics.CRM.{cast}?$select=LogicalName&$expand=OptionSet($select={options})",
                entity.logical_name()
            ))
            .await?;
        Ok::<_, EngineError>((cast, body))
    }))
    .await?;
    let mut out = HashMap::new();
    for (cast, body) in bodies {
        let items = body
            .get("value")
            .and_then(Value::as_array)
            .ok_or_else(|| EngineError::Protocol(format!("{cast} metadata without `value`")))?;
        for a in items {
            let (Some(name), Some(set)) = (
                a.get("LogicalName").and_then(Value::as_str),
                a.get("OptionSet"),
            ) else {
                continue;
            };
            out.insert(name.to_owned(), option_values(set));
        }
    }
    Ok(out)
}

/// The column name a Web API row carries for an attribute (`_x_value` for lookups).
fn row_name(attr: &CrmAttribute) -> String {
    if attr.lookup {
        format!("_{}_value", attr.logical_name)
    } else {
        attr.logical_name.clone()
    }
}

/// Reads mdsync's API user email from the identity endpoint's `scope` (Marketo stamps it as `Modifying
/// User` on every write the user makes).
async fn marketo_api_user(marketo: &MarketoClient) -> Result<String, EngineError> {
    let config = marketo.config();
    let base = config.url.trim().trim_end_matches('/');
    let base = base
        .strip_suffix("/rest")
        .or_else(|| base.strip_suffix("/identity"))
        .unwrap_or(base);
    let http = reqwest::Client::builder()
        .timeout(config.timeout)
        .build()
        .map_err(|e| EngineError::Protocol(format!("http client: {e}")))?;
    let response = http
        .get(format!("{base}/identity/oauth/token"))
        .query(&[
            ("grant_type", "client_credentials"),
            ("client_id", config.client_id.as_str()),
            ("client_secret", config.client_secret.expose()),
        ])
        .send()
        .await
        .map_err(|e| {
            EngineError::Protocol(format!("Marketo identity endpoint: {}", e.without_url()))
        })?;
    let body: Value = response.json().await.map_err(|e| {
        EngineError::Protocol(format!("Marketo identity answer: {}", e.without_url()))
    })?;
    body.get("scope")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            EngineError::NotPrepared(
                "the Marketo identity endpoint did not name the API user (no `scope`); set it in the config"
                    .into(),
            )
        })
}

fn marketo_kind(object: MarketoObject) -> Option<ObjectKind> {
    match object {
        MarketoObject::Company => Some(ObjectKind::Companies),
        MarketoObject::Opportunity => Some(ObjectKind::Opportunities),
        MarketoObject::SalesPerson => Some(ObjectKind::SalesPersons),
        _ => None,
    }
}

/// Looks at both services and narrows the configured mapping to what they have.
pub async fn discover(
    crm: &CrmClient,
    marketo: &MarketoClient,
    settings: &EngineSettings,
) -> Result<Discovery, EngineError> {
    let crm_sync_user = match settings.crm_sync_user {
        Some(id) => id,
        None => crm.whoami().await?.user_id,
    };
    let marketo_api_users = if settings.marketo_api_users.is_empty() {
        vec![marketo_api_user(marketo).await?]
    } else {
        settings.marketo_api_users.clone()
    };
    let mut schema = Schema::default();
    let mut notes = Vec::new();

    // Marketo side: persons always; companies and opportunities when synced.
    let mut marketo_fields: HashMap<MarketoObject, HashSet<String>> = HashMap::new();
    let persons: HashSet<String> = marketo
        .describe_leads()
        .await?
        .into_iter()
        .filter_map(|f| {
            let rest = f.rest?;
            schema.set_marketo(
                MarketoObject::Person,
                rest.name.clone(),
                MarketoFieldType::from_describe(&f.data_type, f.length.map(|n| n as usize)),
            );
            Some(rest.name)
        })
        .collect();
    for required in [MSFT_ID, MSFT_TYPE, MSFT_IS_DELETED] {
        if !persons.contains(required) {
            return Err(EngineError::NotPrepared(format!(
                "the Marketo instance has no `{required}` person field (run `mdsync setup`)"
            )));
        }
    }
    marketo_fields.insert(MarketoObject::Person, persons);

    let mut entities = Vec::new();
    for entity in LOAD_ORDER {
        if settings.entities.contains(&entity) {
            entities.push(entity);
        }
    }
    let mut kept = Vec::new();
    for entity in entities {
        let object = entity.marketo_object();
        if let Some(kind) = marketo_kind(object)
            && !marketo_fields.contains_key(&object)
        {
            match marketo.describe_object(kind).await {
                Ok(d) => {
                    let names = d
                        .fields
                        .into_iter()
                        .map(|f| {
                            schema.set_marketo(
                                object,
                                f.name.clone(),
                                MarketoFieldType::from_describe(
                                    &f.data_type,
                                    f.length.map(|n| n as usize),
                                ),
                            );
                            f.name
                        })
                        .collect();
                    marketo_fields.insert(object, names);
                }
                Err(e) if !crate::error::marketo_transient(&e) && !e.is_fatal() => {
                    notes.push(format!("{entity}: not synced — Marketo {object}s: {e}"));
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        kept.push(entity);
    }

    let mut mappings = Mappings {
        entities: BTreeMap::new(),
    };
    let mut select = HashMap::new();
    let mut filter_column = HashMap::new();
    let mut entities = Vec::new();
    for entity in kept {
        let attrs = match crm_attributes(crm, entity).await {
            Ok(a) => a,
            Err(EngineError::Dataverse(e))
                if e.kind() == mdsync_dataverse_client::ErrorKind::NotFound =>
            {
                notes.push(format!("{entity}: not synced — no such Dataverse table"));
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut columns: HashMap<String, &CrmAttribute> = HashMap::new();
        for a in &attrs {
            if let Some(ty) = &a.ty {
                schema.set_crm(entity, a.logical_name.clone(), ty.clone());
                schema.set_crm(entity, row_name(a), ty.clone());
            }
            columns.insert(row_name(a), a);
        }
        let object = entity.marketo_object();
        let Some(target) = marketo_fields.get(&object) else {
            continue;
        };
        let mut configured = settings
            .mappings
            .get(entity)
            .cloned()
            .unwrap_or_else(|| EntityMapping::defaults(entity));
        if entity == CrmEntity::Contact
            && configured.by_crm(PARENT_CUSTOMER).is_none()
            && !configured
                .fields
                .iter()
                .any(|f| f.marketo == "externalCompanyId")
        {
            configured.fields.push(FieldMapping {
                crm: PARENT_CUSTOMER.into(),
                marketo: "externalCompanyId".into(),
                direction: Direction::ToMarketo,
                conflict: ConflictPolicy::DynamicsWins,
            });
        }
        // Owners sync as sales persons: persons point at theirs (Marketo's own CRM sync does the same).
        if matches!(entity, CrmEntity::Lead | CrmEntity::Contact)
            && settings.entities.contains(&CrmEntity::SystemUser)
            && configured.by_crm(OWNER).is_none()
            && !configured
                .fields
                .iter()
                .any(|f| f.marketo == "externalSalesPersonId")
        {
            configured.fields.push(FieldMapping {
                crm: OWNER.into(),
                marketo: "externalSalesPersonId".into(),
                direction: Direction::ToMarketo,
                conflict: ConflictPolicy::DynamicsWins,
            });
        }
        let mut fields = Vec::new();
        for f in configured.fields {
            match (columns.contains_key(&f.crm), target.contains(&f.marketo)) {
                (true, true) => fields.push(f),
                (false, _) => notes.push(format!(
                    "{entity}.{} → {}: not synced — Dataverse has no such column",
                    f.crm, f.marketo
                )),
                (true, false) => notes.push(format!(
                    "{entity}.{} → {}: not synced — Marketo {object} has no such field",
                    f.crm, f.marketo
                )),
            }
        }
        let mut cols: Vec<String> = vec![entity.primary_key().to_owned()];
        for system in ["_modifiedby_value", "modifiedon", "versionnumber"] {
            if columns.contains_key(system) {
                cols.push(system.to_owned());
            }
        }
        for f in &fields {
            if !cols.contains(&f.crm) {
                cols.push(f.crm.clone());
            }
        }
        // Qualify and merge (§4) need the lead's state, the contact's originating lead and the
        // subordinate's merge flag, whatever the mapping says.
        let extra: &[&str] = match entity {
            CrmEntity::Lead => &["statecode", MERGED, MASTER],
            CrmEntity::Contact => &[ORIGINATING_LEAD, MERGED, MASTER],
            CrmEntity::Account => &[MERGED, MASTER],
            CrmEntity::Opportunity => &[CUSTOMER],
            _ => &[],
        };
        for e in extra {
            if columns.contains_key(*e) && !cols.iter().any(|c| c == e) {
                cols.push((*e).to_owned());
            }
        }
        if let Some(filter) = &settings.filter_field {
            if columns.contains_key(filter) {
                if !cols.contains(filter) {
                    cols.push(filter.clone());
                }
                filter_column.insert(entity, filter.clone());
            } else {
                notes.push(format!(
                    "{entity}: the sync filter `{filter}` does not exist; every record syncs"
                ));
            }
        }
        select.insert(entity, cols);
        mappings
            .entities
            .insert(entity, EntityMapping { entity, fields });
        entities.push(entity);
    }
    Ok(Discovery {
        crm_sync_user,
        marketo_api_users,
        schema,
        mappings,
        entities,
        select,
        filter_column,
        notes,
    })
}
