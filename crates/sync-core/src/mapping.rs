//! Field mapping: which Dynamics attribute becomes which Marketo field, in which direction, and who wins
//! when both sides changed it.
//!
//! The built-in defaults follow Marketo's default Dynamics mapping (marketo-dynamics-sync.md §3); a config
//! file overrides them per entity with `[[mapping.<entity>]]` tables, which [`MappingConfig`] deserializes.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::record::{CrmEntity, Flow};

/// Which way a mapped field flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Both,
    ToMarketo,
    ToDynamics,
}

impl Direction {
    /// Whether a change may flow in `flow` under this direction.
    pub fn allows(self, flow: Flow) -> bool {
        matches!(
            (self, flow),
            (Direction::Both, _)
                | (Direction::ToMarketo, Flow::ToMarketo)
                | (Direction::ToDynamics, Flow::ToDynamics)
        )
    }
}

/// Who wins when both sides changed the same field since the last cycle (see [`crate::conflict`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictPolicy {
    MarketoWins,
    DynamicsWins,
    NewestWins,
    KeepNonEmpty,
}

impl ConflictPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictPolicy::MarketoWins => "marketo_wins",
            ConflictPolicy::DynamicsWins => "dynamics_wins",
            ConflictPolicy::NewestWins => "newest_wins",
            ConflictPolicy::KeepNonEmpty => "keep_non_empty",
        }
    }

    /// The documented default: Marketo wins on leads, Dynamics on contacts and every one-way entity.
    pub fn default_for(entity: CrmEntity) -> ConflictPolicy {
        match entity {
            CrmEntity::Lead => ConflictPolicy::MarketoWins,
            _ => ConflictPolicy::DynamicsWins,
        }
    }
}

/// One mapped field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldMapping {
    /// Dataverse logical name (`firstname`, `_parentcustomerid_value`).
    pub crm: String,
    /// Marketo REST name (`firstName`).
    pub marketo: String,
    pub direction: Direction,
    pub conflict: ConflictPolicy,
}

/// The mapping of one entity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityMapping {
    pub entity: CrmEntity,
    pub fields: Vec<FieldMapping>,
}

/// Person fields mdsync maintains itself; read-only in Marketo, so never mapped towards Dynamics.
pub const MSFT_ID: &str = "msftId";
pub const MSFT_TYPE: &str = "msftType";
pub const MSFT_CREATED_DATE: &str = "msftCreatedDate";
pub const MSFT_IS_DELETED: &str = "msftIsDeleted";
const MANAGED_PERSON_FIELDS: [&str; 4] = [MSFT_ID, MSFT_TYPE, MSFT_CREATED_DATE, MSFT_IS_DELETED];

impl EntityMapping {
    /// Marketo's default mapping for `entity`, with the entity's default direction and conflict policy.
    pub fn defaults(entity: CrmEntity) -> EntityMapping {
        let person_common: &[(&str, &str, Option<Direction>)] = &[
            ("firstname", "firstName", None),
            ("middlename", "middleName", None),
            ("lastname", "lastName", None),
            ("emailaddress1", "email", None),
            ("jobtitle", "title", None),
            ("telephone1", "phone", None),
            ("mobilephone", "mobilePhone", None),
            ("address1_line1", "address", None),
            ("address1_city", "city", None),
            ("address1_stateorprovince", "state", None),
            ("address1_postalcode", "postalCode", None),
            ("address1_country", "country", None),
            // State changes need a valid statecode/statuscode pair in Dataverse (0x80048408), which a
            // marketer cannot be expected to produce: Dynamics owns them.
            ("statecode", "msftPersonStatus", Some(Direction::ToMarketo)),
            ("statuscode", "msftStatusReason", Some(Direction::ToMarketo)),
            ("donotbulkemail", "unsubscribed", None),
            ("donotphone", "doNotCall", None),
            // createdon is system-set in Dataverse.
            ("createdon", MSFT_CREATED_DATE, Some(Direction::ToMarketo)),
        ];
        let lead_only: &[(&str, &str, Option<Direction>)] = &[
            ("companyname", "company", None),
            ("leadsourcecode", "leadSource", None),
        ];
        let account: &[(&str, &str, Option<Direction>)] = &[
            ("name", "company", None),
            ("industrycode", "industry", None),
            ("numberofemployees", "numberOfEmployees", None),
            ("websiteurl", "website", None),
            ("telephone1", "mainPhone", None),
            ("address1_line1", "billingStreet", None),
            ("address1_city", "billingCity", None),
            ("address1_stateorprovince", "billingState", None),
            ("address1_postalcode", "billingPostalCode", None),
            ("address1_country", "billingCountry", None),
        ];
        let opportunity: &[(&str, &str, Option<Direction>)] = &[
            ("name", "name", None),
            ("statecode", "stage", None),
            ("estimatedvalue", "amount", None),
            ("description", "description", None),
        ];
        let systemuser: &[(&str, &str, Option<Direction>)] = &[
            ("firstname", "firstName", None),
            ("lastname", "lastName", None),
            ("internalemailaddress", "email", None),
            ("title", "title", None),
            ("address1_telephone1", "phone", None),
        ];
        let table: Vec<&(&str, &str, Option<Direction>)> = match entity {
            CrmEntity::Lead => person_common.iter().chain(lead_only).collect(),
            CrmEntity::Contact => person_common.iter().collect(),
            CrmEntity::Account => account.iter().collect(),
            CrmEntity::Opportunity => opportunity.iter().collect(),
            CrmEntity::SystemUser => systemuser.iter().collect(),
        };
        let default_direction = if entity.is_two_way() {
            Direction::Both
        } else {
            Direction::ToMarketo
        };
        let conflict = ConflictPolicy::default_for(entity);
        EntityMapping {
            entity,
            fields: table
                .into_iter()
                .map(|(crm, marketo, direction)| FieldMapping {
                    crm: (*crm).to_owned(),
                    marketo: (*marketo).to_owned(),
                    direction: direction.unwrap_or(default_direction),
                    conflict,
                })
                .collect(),
        }
    }

    /// The mapping whose Dynamics attribute is `crm`.
    pub fn by_crm(&self, crm: &str) -> Option<&FieldMapping> {
        self.fields.iter().find(|f| f.crm == crm)
    }

    /// The mapping whose Marketo field is `marketo` and which may flow to Dynamics.
    pub fn by_marketo_to_dynamics(&self, marketo: &str) -> Option<&FieldMapping> {
        self.fields
            .iter()
            .find(|f| f.marketo == marketo && f.direction.allows(Flow::ToDynamics))
    }

    /// Fields that may flow in `flow`, in mapping order.
    pub fn flowing(&self, flow: Flow) -> impl Iterator<Item = &FieldMapping> {
        self.fields.iter().filter(move |f| f.direction.allows(flow))
    }

    /// Applies config overrides: a row with a known `crm` name replaces that default, `enabled = false`
    /// removes it, other rows are added. The result is validated.
    pub fn apply(&mut self, overrides: &[FieldOverride]) -> Result<(), MappingError> {
        for o in overrides {
            let crm = o.crm.trim();
            let marketo = o.marketo.trim();
            if crm.is_empty()
                || marketo.is_empty()
                || crm.contains(char::is_whitespace)
                || marketo.contains(char::is_whitespace)
            {
                return Err(MappingError::BadName {
                    entity: self.entity,
                    crm: o.crm.clone(),
                    marketo: o.marketo.clone(),
                });
            }
            let existing = self.fields.iter().position(|f| f.crm == crm);
            if !o.enabled {
                match existing {
                    Some(i) => {
                        self.fields.remove(i);
                    }
                    None => {
                        return Err(MappingError::NothingToDisable {
                            entity: self.entity,
                            crm: crm.to_owned(),
                        });
                    }
                }
                continue;
            }
            let base = existing.map(|i| self.fields[i].clone());
            let field = FieldMapping {
                crm: crm.to_owned(),
                marketo: marketo.to_owned(),
                direction: o
                    .direction
                    .or(base.as_ref().map(|b| b.direction))
                    .unwrap_or(if self.entity.is_two_way() {
                        Direction::Both
                    } else {
                        Direction::ToMarketo
                    }),
                conflict: o
                    .conflict
                    .or(base.as_ref().map(|b| b.conflict))
                    .unwrap_or(ConflictPolicy::default_for(self.entity)),
            };
            match existing {
                Some(i) => self.fields[i] = field,
                None => self.fields.push(field),
            }
        }
        self.validate()
    }

    /// Checks the rules a mapping must satisfy whatever its origin.
    pub fn validate(&self) -> Result<(), MappingError> {
        let mut to_marketo = HashSet::new();
        let mut to_dynamics = HashSet::new();
        let mut crm_names = HashSet::new();
        for f in &self.fields {
            if !crm_names.insert(f.crm.as_str()) {
                return Err(MappingError::DuplicateCrmField {
                    entity: self.entity,
                    crm: f.crm.clone(),
                });
            }
            if !self.entity.is_two_way() && f.direction != Direction::ToMarketo {
                return Err(MappingError::OneWayEntity {
                    entity: self.entity,
                    crm: f.crm.clone(),
                    direction: f.direction,
                });
            }
            if f.direction.allows(Flow::ToDynamics)
                && MANAGED_PERSON_FIELDS.contains(&f.marketo.as_str())
            {
                return Err(MappingError::ReadOnlyMarketoField {
                    entity: self.entity,
                    marketo: f.marketo.clone(),
                });
            }
            if f.direction.allows(Flow::ToMarketo) && !to_marketo.insert(f.marketo.as_str()) {
                return Err(MappingError::DuplicateMarketoTarget {
                    entity: self.entity,
                    marketo: f.marketo.clone(),
                });
            }
            if f.direction.allows(Flow::ToDynamics) && !to_dynamics.insert(f.marketo.as_str()) {
                return Err(MappingError::DuplicateMarketoTarget {
                    entity: self.entity,
                    marketo: f.marketo.clone(),
                });
            }
        }
        Ok(())
    }
}

/// One `[[mapping.<entity>]]` table of the config file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldOverride {
    /// Dataverse logical name.
    pub crm: String,
    /// Marketo REST field name.
    pub marketo: String,
    /// `both`, `to_marketo` or `to_dynamics`; defaults to the replaced mapping's, else the entity's.
    #[serde(default)]
    pub direction: Option<Direction>,
    /// `marketo_wins`, `dynamics_wins`, `newest_wins` or `keep_non_empty`; defaults like `direction`.
    #[serde(default)]
    pub conflict: Option<ConflictPolicy>,
    /// `false` removes a built-in mapping of the same `crm` attribute.
    #[serde(default = "enabled_default")]
    pub enabled: bool,
}

fn enabled_default() -> bool {
    true
}

/// The `[mapping]` section of the config file: per-entity override tables.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingConfig {
    #[serde(default)]
    pub lead: Vec<FieldOverride>,
    #[serde(default)]
    pub contact: Vec<FieldOverride>,
    #[serde(default)]
    pub account: Vec<FieldOverride>,
    #[serde(default)]
    pub opportunity: Vec<FieldOverride>,
    #[serde(default)]
    pub systemuser: Vec<FieldOverride>,
}

impl MappingConfig {
    fn overrides(&self, entity: CrmEntity) -> &[FieldOverride] {
        match entity {
            CrmEntity::Lead => &self.lead,
            CrmEntity::Contact => &self.contact,
            CrmEntity::Account => &self.account,
            CrmEntity::Opportunity => &self.opportunity,
            CrmEntity::SystemUser => &self.systemuser,
        }
    }
}

/// The mappings of every entity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mappings {
    pub entities: BTreeMap<CrmEntity, EntityMapping>,
}

impl Default for Mappings {
    fn default() -> Self {
        Mappings {
            entities: CrmEntity::ALL
                .into_iter()
                .map(|e| (e, EntityMapping::defaults(e)))
                .collect(),
        }
    }
}

impl Mappings {
    /// The defaults with `config` applied.
    pub fn from_config(config: &MappingConfig) -> Result<Mappings, MappingError> {
        let mut m = Mappings::default();
        for (entity, mapping) in m.entities.iter_mut() {
            mapping.apply(config.overrides(*entity))?;
        }
        Ok(m)
    }

    pub fn get(&self, entity: CrmEntity) -> Option<&EntityMapping> {
        self.entities.get(&entity)
    }
}

/// A mapping the config asks for that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error(
        "[[mapping.{entity}]]: crm = {crm:?}, marketo = {marketo:?}: field names must be non-empty and contain no spaces"
    )]
    BadName {
        entity: CrmEntity,
        crm: String,
        marketo: String,
    },
    #[error("[[mapping.{entity}]]: `{crm}` is mapped twice")]
    DuplicateCrmField { entity: CrmEntity, crm: String },
    #[error(
        "[[mapping.{entity}]]: Marketo field `{marketo}` is the target of more than one mapping"
    )]
    DuplicateMarketoTarget { entity: CrmEntity, marketo: String },
    #[error(
        "[[mapping.{entity}]]: `{crm}` has direction {direction:?}, but {entity} syncs one way (to_marketo only): Marketo cannot create or update it"
    )]
    OneWayEntity {
        entity: CrmEntity,
        crm: String,
        direction: Direction,
    },
    #[error(
        "[[mapping.{entity}]]: `{marketo}` is maintained by mdsync and read-only in Marketo; it cannot flow to Dynamics"
    )]
    ReadOnlyMarketoField { entity: CrmEntity, marketo: String },
    #[error(
        "[[mapping.{entity}]]: `{crm}` has enabled = false but there is no mapping of it to disable"
    )]
    NothingToDisable { entity: CrmEntity, crm: String },
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_follow_marketo_default_mapping() {
        let m = Mappings::default();
        let lead = m.get(CrmEntity::Lead).expect("lead");
        for (crm, mk) in [
            ("firstname", "firstName"),
            ("lastname", "lastName"),
            ("emailaddress1", "email"),
            ("telephone1", "phone"),
            ("address1_line1", "address"),
            ("address1_city", "city"),
            ("address1_stateorprovince", "state"),
            ("address1_postalcode", "postalCode"),
            ("address1_country", "country"),
            ("companyname", "company"),
            ("leadsourcecode", "leadSource"),
            ("donotbulkemail", "unsubscribed"),
            ("donotphone", "doNotCall"),
            ("createdon", "msftCreatedDate"),
        ] {
            assert_eq!(
                lead.by_crm(crm).map(|f| f.marketo.as_str()),
                Some(mk),
                "{crm}"
            );
        }
        assert!(lead.by_crm("statecode").is_some() && lead.by_crm("statuscode").is_some());
        assert!(
            lead.fields
                .iter()
                .all(|f| f.conflict == ConflictPolicy::MarketoWins)
        );
        assert_eq!(
            lead.by_crm("firstname").map(|f| f.direction),
            Some(Direction::Both)
        );
        assert_eq!(
            lead.by_crm("createdon").map(|f| f.direction),
            Some(Direction::ToMarketo)
        );

        let contact = m.get(CrmEntity::Contact).expect("contact");
        assert!(
            contact.by_crm("companyname").is_none() && contact.by_crm("leadsourcecode").is_none()
        );
        assert!(
            contact
                .fields
                .iter()
                .all(|f| f.conflict == ConflictPolicy::DynamicsWins)
        );

        let account = m.get(CrmEntity::Account).expect("account");
        assert_eq!(
            account.by_crm("name").map(|f| f.marketo.as_str()),
            Some("company")
        );
        assert_eq!(
            account.by_crm("industrycode").map(|f| f.marketo.as_str()),
            Some("industry")
        );
        assert_eq!(
            account
                .by_crm("numberofemployees")
                .map(|f| f.marketo.as_str()),
            Some("numberOfEmployees")
        );
        let opp = m.get(CrmEntity::Opportunity).expect("opportunity");
        assert_eq!(opp.by_crm("name").map(|f| f.marketo.as_str()), Some("name"));
        assert_eq!(
            opp.by_crm("statecode").map(|f| f.marketo.as_str()),
            Some("stage")
        );
        assert_eq!(
            opp.by_crm("estimatedvalue").map(|f| f.marketo.as_str()),
            Some("amount")
        );
        for e in [
            CrmEntity::Account,
            CrmEntity::Opportunity,
            CrmEntity::SystemUser,
        ] {
            let em = m.get(e).expect("entity");
            assert!(em.fields.iter().all(|f| f.direction == Direction::ToMarketo
                && f.conflict == ConflictPolicy::DynamicsWins));
        }
        for em in m.entities.values() {
            em.validate().expect("defaults are valid");
        }
    }

    #[test]
    fn overrides_replace_add_and_remove() {
        let config: MappingConfig = serde_json::from_value(json!({
            "lead": [
                {"crm": "firstname", "marketo": "firstName", "conflict": "newest_wins"},
                {"crm": "new_score", "marketo": "leadScore", "direction": "to_dynamics"},
                {"crm": "middlename", "marketo": "middleName", "enabled": false}
            ],
            "account": [{"crm": "revenue", "marketo": "annualRevenue"}]
        }))
        .expect("valid config");
        let m = Mappings::from_config(&config).expect("valid mapping");
        let lead = m.get(CrmEntity::Lead).expect("lead");
        let first = lead.by_crm("firstname").expect("firstname");
        assert_eq!(
            (first.direction, first.conflict),
            (Direction::Both, ConflictPolicy::NewestWins)
        );
        let score = lead.by_crm("new_score").expect("added");
        assert_eq!(
            (score.direction, score.conflict),
            (Direction::ToDynamics, ConflictPolicy::MarketoWins)
        );
        assert!(lead.by_crm("middlename").is_none());
        assert_eq!(
            lead.by_marketo_to_dynamics("leadScore")
                .map(|f| f.crm.as_str()),
            Some("new_score")
        );
        assert_eq!(lead.by_marketo_to_dynamics("msftCreatedDate"), None);
        let acct = m
            .get(CrmEntity::Account)
            .expect("account")
            .by_crm("revenue")
            .expect("revenue");
        assert_eq!(acct.direction, Direction::ToMarketo);
    }

    #[test]
    fn config_errors_are_clear() {
        let unknown = serde_json::from_value::<MappingConfig>(
            json!({"lead": [{"crm": "a", "marketo": "b", "dirction": "both"}]}),
        )
        .unwrap_err()
        .to_string();
        assert!(unknown.contains("unknown field `dirction`"), "{unknown}");
        let bad_dir = serde_json::from_value::<MappingConfig>(
            json!({"lead": [{"crm": "a", "marketo": "b", "direction": "sideways"}]}),
        )
        .unwrap_err()
        .to_string();
        assert!(bad_dir.contains("unknown variant `sideways`"), "{bad_dir}");
        let bad_entity = serde_json::from_value::<MappingConfig>(json!({"campaign": []}))
            .unwrap_err()
            .to_string();
        assert!(
            bad_entity.contains("unknown field `campaign`"),
            "{bad_entity}"
        );

        let cases = [
            (
                json!({"account": [{"crm": "name", "marketo": "company", "direction": "both"}]}),
                "[[mapping.account]]: `name` has direction Both, but account syncs one way (to_marketo only): Marketo cannot create or update it",
            ),
            (
                json!({"lead": [{"crm": "new_x", "marketo": "email"}]}),
                "[[mapping.lead]]: Marketo field `email` is the target of more than one mapping",
            ),
            (
                json!({"contact": [{"crm": "new_x", "marketo": "msftId", "direction": "to_dynamics"}]}),
                "[[mapping.contact]]: `msftId` is maintained by mdsync and read-only in Marketo; it cannot flow to Dynamics",
            ),
            (
                json!({"lead": [{"crm": "new_x", "marketo": "", "direction": "both"}]}),
                "[[mapping.lead]]: crm = \"new_x\", marketo = \"\": field names must be non-empty and contain no spaces",
            ),
            (
                json!({"lead": [{"crm": "new_x", "marketo": "x", "enabled": false}]}),
                "[[mapping.lead]]: `new_x` has enabled = false but there is no mapping of it to disable",
            ),
        ];
        for (config, message) in cases {
            let config: MappingConfig = serde_json::from_value(config).expect("shape is valid");
            assert_eq!(
                Mappings::from_config(&config).unwrap_err().to_string(),
                message
            );
        }
    }

    #[test]
    fn direction_allows() {
        assert!(
            Direction::Both.allows(Flow::ToMarketo) && Direction::Both.allows(Flow::ToDynamics)
        );
        assert!(
            Direction::ToMarketo.allows(Flow::ToMarketo)
                && !Direction::ToMarketo.allows(Flow::ToDynamics)
        );
        assert!(
            !Direction::ToDynamics.allows(Flow::ToMarketo)
                && Direction::ToDynamics.allows(Flow::ToDynamics)
        );
    }
}
