//! Table metadata: one [`EntityDef`] per table drives CRUD, validation, `$metadata`,
//! `EntityDefinitions`, error messages and security, so no entity has hand-written handlers.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Column types the emulator models (a subset of Dataverse `AttributeTypeCode`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ColumnType {
    String {
        max_len: u32,
    },
    Memo {
        max_len: u32,
    },
    Integer,
    BigInt,
    Decimal,
    Money,
    Double,
    Boolean,
    DateTime,
    Uniqueidentifier,
    /// Choice column: allowed integer values with labels.
    Picklist {
        options: Vec<(i64, String)>,
    },
    /// `statecode`: values with labels.
    State {
        options: Vec<(i64, String)>,
    },
    /// `statuscode`: (value, label, owning statecode).
    Status {
        options: Vec<(i64, String, i64)>,
    },
    /// Lookup to one or more tables (logical names); read as `_<name>_value`.
    Lookup {
        targets: Vec<String>,
    },
}

impl ColumnType {
    /// `AttributeType` as `EntityDefinitions` reports it.
    pub fn attribute_type(&self) -> &'static str {
        match self {
            ColumnType::String { .. } => "String",
            ColumnType::Memo { .. } => "Memo",
            ColumnType::Integer => "Integer",
            ColumnType::BigInt => "BigInt",
            ColumnType::Decimal => "Decimal",
            ColumnType::Money => "Money",
            ColumnType::Double => "Double",
            ColumnType::Boolean => "Boolean",
            ColumnType::DateTime => "DateTime",
            ColumnType::Uniqueidentifier => "Uniqueidentifier",
            ColumnType::Picklist { .. } => "Picklist",
            ColumnType::State { .. } => "State",
            ColumnType::Status { .. } => "Status",
            ColumnType::Lookup { targets } if targets.len() > 1 => "Customer",
            ColumnType::Lookup { targets } if targets.iter().any(|t| t == "team") => "Owner",
            ColumnType::Lookup { .. } => "Lookup",
        }
    }
    /// Metadata type name (`Microsoft.Dynamics.CRM.<x>AttributeMetadata`).
    pub fn metadata_type(&self) -> &'static str {
        match self {
            ColumnType::String { .. } => "StringAttributeMetadata",
            ColumnType::Memo { .. } => "MemoAttributeMetadata",
            ColumnType::Integer => "IntegerAttributeMetadata",
            ColumnType::BigInt => "BigIntAttributeMetadata",
            ColumnType::Decimal => "DecimalAttributeMetadata",
            ColumnType::Money => "MoneyAttributeMetadata",
            ColumnType::Double => "DoubleAttributeMetadata",
            ColumnType::Boolean => "BooleanAttributeMetadata",
            ColumnType::DateTime => "DateTimeAttributeMetadata",
            ColumnType::Uniqueidentifier => "UniqueIdentifierAttributeMetadata",
            ColumnType::Picklist { .. } => "PicklistAttributeMetadata",
            ColumnType::State { .. } => "StateAttributeMetadata",
            ColumnType::Status { .. } => "StatusAttributeMetadata",
            ColumnType::Lookup { .. } => "LookupAttributeMetadata",
        }
    }
    /// EDM type used in `$metadata`.
    pub fn edm_type(&self) -> &'static str {
        match self {
            ColumnType::String { .. } | ColumnType::Memo { .. } => "Edm.String",
            ColumnType::Integer
            | ColumnType::Picklist { .. }
            | ColumnType::State { .. }
            | ColumnType::Status { .. } => "Edm.Int32",
            ColumnType::BigInt => "Edm.Int64",
            ColumnType::Decimal | ColumnType::Money => "Edm.Decimal",
            ColumnType::Double => "Edm.Double",
            ColumnType::Boolean => "Edm.Boolean",
            ColumnType::DateTime => "Edm.DateTimeOffset",
            ColumnType::Uniqueidentifier | ColumnType::Lookup { .. } => "Edm.Guid",
        }
    }
}

/// One column of a table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ColumnDef {
    pub logical_name: String,
    pub schema_name: String,
    pub display_name: String,
    pub ty: ColumnType,
    /// `SystemRequired`: must have a value on create (the platform does not enforce ApplicationRequired).
    pub required: bool,
    /// Settable by clients on create (false for system-managed columns).
    pub valid_for_create: bool,
    pub valid_for_update: bool,
    pub custom: bool,
    pub metadata_id: Uuid,
}

impl ColumnDef {
    /// The JSON property name on the wire (`_x_value` for lookups).
    pub fn wire_name(&self) -> String {
        match self.ty {
            ColumnType::Lookup { .. } => format!("_{}_value", self.logical_name),
            _ => self.logical_name.clone(),
        }
    }
    pub fn is_lookup(&self) -> bool {
        matches!(self.ty, ColumnType::Lookup { .. })
    }
}

/// One table.
#[derive(Clone, Debug)]
pub struct EntityDef {
    pub logical_name: String,
    pub schema_name: String,
    pub set_name: String,
    pub display_name: String,
    pub primary_key: String,
    pub primary_name: Option<String>,
    pub columns: Vec<ColumnDef>,
    /// Alternate keys: each a list of column logical names.
    pub alternate_keys: Vec<Vec<String>>,
    /// Schema names of the alternate keys created through the metadata API (same order as the
    /// tail of `alternate_keys`; built-in keys have none).
    pub key_schema_names: Vec<(Vec<String>, String)>,
    pub change_tracking: bool,
    pub user_owned: bool,
    pub object_type_code: i32,
    pub metadata_id: Uuid,
    /// Records a caller may always read and write when the record id is their own systemuserid
    /// (`usersettings`).
    pub self_service: bool,
    pub custom_entity: bool,
}

impl EntityDef {
    pub fn column(&self, logical: &str) -> Option<&ColumnDef> {
        self.columns.iter().find(|c| c.logical_name == logical)
    }
    /// Finds a column by its wire name (`name` or `_x_value`).
    pub fn column_by_wire(&self, wire: &str) -> Option<&ColumnDef> {
        if let Some(inner) = wire
            .strip_prefix('_')
            .and_then(|w| w.strip_suffix("_value"))
            && let Some(c) = self.column(inner).filter(|c| c.is_lookup())
        {
            return Some(c);
        }
        self.column(wire).filter(|c| !c.is_lookup())
    }
    /// The fully qualified type name, e.g. `Microsoft.Dynamics.CRM.account`.
    pub fn type_name(&self) -> String {
        format!("Microsoft.Dynamics.CRM.{}", self.logical_name)
    }
    /// Whether the full name is computed from first and last names.
    pub fn has_fullname(&self) -> bool {
        self.column("fullname").is_some() && self.column("firstname").is_some()
    }
}

/// Deterministic metadata ids, stable across restarts (sha256 of a label).
pub fn stable_uuid(label: &str) -> Uuid {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(label.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    Uuid::from_bytes(b)
}

struct Builder {
    def: EntityDef,
}

fn col(entity: &str, name: &str, display: &str, ty: ColumnType) -> ColumnDef {
    ColumnDef {
        logical_name: name.to_string(),
        schema_name: schema_case(name),
        display_name: display.to_string(),
        ty,
        required: false,
        valid_for_create: true,
        valid_for_update: true,
        custom: false,
        metadata_id: stable_uuid(&format!("attr:{entity}.{name}")),
    }
}

/// Words of the built-in logical names, for rebuilding Dataverse's PascalCase schema names.
const WORDS: &[&str] = &[
    "access",
    "account",
    "active",
    "address",
    "application",
    "azure",
    "behalf",
    "behavior",
    "bulk",
    "business",
    "by",
    "change",
    "city",
    "close",
    "code",
    "company",
    "component",
    "config",
    "contact",
    "country",
    "created",
    "customer",
    "date",
    "days",
    "default",
    "desc",
    "description",
    "directory",
    "disabled",
    "do",
    "domain",
    "email",
    "employees",
    "estimated",
    "expire",
    "first",
    "friendly",
    "full",
    "help",
    "id",
    "in",
    "installed",
    "integration",
    "interesting",
    "internal",
    "is",
    "job",
    "language",
    "last",
    "lead",
    "licensed",
    "line",
    "locale",
    "managed",
    "marketo",
    "message",
    "mobile",
    "mode",
    "modified",
    "moment",
    "name",
    "not",
    "number",
    "object",
    "of",
    "on",
    "opportunity",
    "or",
    "organization",
    "owner",
    "owning",
    "parent",
    "phone",
    "postal",
    "primary",
    "priority",
    "probability",
    "processing",
    "province",
    "rank",
    "relative",
    "revenue",
    "role",
    "root",
    "score",
    "sdk",
    "settings",
    "site",
    "solution",
    "source",
    "stage",
    "state",
    "status",
    "step",
    "subject",
    "system",
    "team",
    "telephone",
    "template",
    "time",
    "title",
    "tracking",
    "type",
    "ui",
    "unique",
    "unit",
    "urgency",
    "url",
    "user",
    "value",
    "version",
    "visible",
    "web",
    "zone",
];

fn word_case(w: &str) -> String {
    match w {
        "email" => "EMail".into(),
        "url" => "URL".into(),
        "ui" => "UI".into(),
        _ => {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect())
                .unwrap_or_default()
        }
    }
}

/// Splits a lower-case run (digits stay attached to the word before) into the fewest known
/// words; None when it cannot be split.
fn segment(run: &str) -> Option<Vec<String>> {
    let n = run.len();
    let mut best: Vec<Option<Vec<String>>> = vec![None; n + 1];
    best[0] = Some(Vec::new());
    for i in 0..n {
        let Some(prefix) = best[i].clone() else {
            continue;
        };
        for w in WORDS {
            if run[i..].starts_with(w) {
                let mut j = i + w.len();
                while j < n && run.as_bytes()[j].is_ascii_digit() {
                    j += 1;
                }
                let mut cand = prefix.clone();
                cand.push(format!("{}{}", word_case(w), &run[i + w.len()..j]));
                if best[j].as_ref().is_none_or(|b| b.len() > cand.len()) {
                    best[j] = Some(cand);
                }
            }
        }
    }
    best[n].take()
}

/// Dataverse schema names: `emailaddress1` → `EMailAddress1`, `address1_city` → `Address1_City`,
/// `websiteurl` → `WebSiteURL`; unknown words are title-cased. The publisher prefix of custom
/// names stays lower case (`mkt_LeadScore`).
fn schema_case(name: &str) -> String {
    let parts: Vec<&str> = name.split('_').collect();
    let custom = parts.len() > 1 && CUSTOM_PREFIXES.iter().any(|p| name.starts_with(p));
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            if custom && i == 0 {
                return part.to_string();
            }
            segment(part)
                .map(|ws| ws.concat())
                .unwrap_or_else(|| word_case(part))
        })
        .collect::<Vec<_>>()
        .join("_")
}

impl Builder {
    fn new(logical: &str, set: &str, display: &str, otc: i32) -> Self {
        let pk = format!("{logical}id");
        let mut b = Builder {
            def: EntityDef {
                logical_name: logical.into(),
                schema_name: schema_case(logical),
                set_name: set.into(),
                display_name: display.into(),
                primary_key: pk.clone(),
                primary_name: None,
                columns: Vec::new(),
                alternate_keys: Vec::new(),
                key_schema_names: Vec::new(),
                change_tracking: true,
                user_owned: false,
                object_type_code: otc,
                metadata_id: stable_uuid(&format!("entity:{logical}")),
                self_service: false,
                custom_entity: false,
            },
        };
        let mut key = col(logical, &pk, display, ColumnType::Uniqueidentifier);
        key.valid_for_update = false;
        b.def.columns.push(key);
        for (n, d) in [("createdon", "Created On"), ("modifiedon", "Modified On")] {
            let mut c = col(logical, n, d, ColumnType::DateTime);
            c.valid_for_create = false;
            c.valid_for_update = false;
            b.def.columns.push(c);
        }
        let mut v = col(
            logical,
            "versionnumber",
            "Version Number",
            ColumnType::BigInt,
        );
        v.valid_for_create = false;
        v.valid_for_update = false;
        b.def.columns.push(v);
        for (n, d) in [
            ("createdby", "Created By"),
            ("modifiedby", "Modified By"),
            ("createdonbehalfby", "Created By (Delegate)"),
            ("modifiedonbehalfby", "Modified By (Delegate)"),
        ] {
            let mut c = col(
                logical,
                n,
                d,
                ColumnType::Lookup {
                    targets: vec!["systemuser".into()],
                },
            );
            c.valid_for_create = false;
            c.valid_for_update = false;
            b.def.columns.push(c);
        }
        b
    }
    fn name(mut self, name: &str, max: u32) -> Self {
        self.def.primary_name = Some(name.into());
        let mut c = col(
            &self.def.logical_name,
            name,
            "Name",
            ColumnType::String { max_len: max },
        );
        if name == "fullname" {
            c.valid_for_create = false;
            c.valid_for_update = false;
        }
        self.def.columns.push(c);
        self
    }
    fn s(mut self, name: &str, max: u32) -> Self {
        let c = col(
            &self.def.logical_name,
            name,
            name,
            ColumnType::String { max_len: max },
        );
        self.def.columns.push(c);
        self
    }
    fn memo(mut self, name: &str, max: u32) -> Self {
        let c = col(
            &self.def.logical_name,
            name,
            name,
            ColumnType::Memo { max_len: max },
        );
        self.def.columns.push(c);
        self
    }
    fn t(mut self, name: &str, ty: ColumnType) -> Self {
        let c = col(&self.def.logical_name, name, name, ty);
        self.def.columns.push(c);
        self
    }
    fn required(mut self, name: &str) -> Self {
        if let Some(c) = self.def.columns.iter_mut().find(|c| c.logical_name == name) {
            c.required = true;
        }
        self
    }
    fn create_only_false(mut self, name: &str) -> Self {
        if let Some(c) = self.def.columns.iter_mut().find(|c| c.logical_name == name) {
            c.valid_for_create = false;
        }
        self
    }
    fn readonly(mut self, name: &str) -> Self {
        if let Some(c) = self.def.columns.iter_mut().find(|c| c.logical_name == name) {
            c.valid_for_create = false;
            c.valid_for_update = false;
        }
        self
    }
    fn lookup(self, name: &str, targets: &[&str]) -> Self {
        self.t(
            name,
            ColumnType::Lookup {
                targets: targets.iter().map(|t| t.to_string()).collect(),
            },
        )
    }
    /// `merged` and `masterid` (the record a merged row was folded into); set only by `Merge`.
    fn merge_columns(self, entity: &str) -> Self {
        self.t("merged", ColumnType::Boolean)
            .readonly("merged")
            .lookup("masterid", &[entity])
            .readonly("masterid")
    }
    fn address(self) -> Self {
        self.s("address1_line1", 250)
            .s("address1_line2", 250)
            .s("address1_city", 80)
            .s("address1_stateorprovince", 50)
            .s("address1_postalcode", 20)
            .s("address1_country", 80)
    }
    fn owner(mut self) -> Self {
        self.def.user_owned = true;
        self.lookup("ownerid", &["systemuser", "team"])
            .lookup("owningbusinessunit", &["businessunit"])
            .readonly("owningbusinessunit")
    }
    fn state(self, states: &[(i64, &str)], statuses: &[(i64, &str, i64)]) -> Self {
        self.t(
            "statecode",
            ColumnType::State {
                options: states.iter().map(|(v, l)| (*v, l.to_string())).collect(),
            },
        )
        .t(
            "statuscode",
            ColumnType::Status {
                options: statuses
                    .iter()
                    .map(|(v, l, s)| (*v, l.to_string(), *s))
                    .collect(),
            },
        )
    }
    fn active_inactive(self) -> Self {
        self.state(
            &[(0, "Active"), (1, "Inactive")],
            &[(1, "Active", 0), (2, "Inactive", 1)],
        )
    }
    fn key(mut self, cols: &[&str]) -> Self {
        self.def
            .alternate_keys
            .push(cols.iter().map(|c| c.to_string()).collect());
        self
    }
    fn no_tracking(mut self) -> Self {
        self.def.change_tracking = false;
        self
    }
    fn build(self) -> EntityDef {
        self.def
    }
}

fn picklist(opts: &[(i64, &str)]) -> ColumnType {
    ColumnType::Picklist {
        options: opts.iter().map(|(v, l)| (*v, l.to_string())).collect(),
    }
}

/// The built-in tables, in the order `$metadata` lists them.
pub fn builtin_entities() -> Vec<EntityDef> {
    let lead_source = picklist(&[
        (1, "Advertisement"),
        (2, "Employee Referral"),
        (3, "External Referral"),
        (4, "Partner"),
        (5, "Public Relations"),
        (6, "Seminar"),
        (7, "Trade Show"),
        (8, "Web"),
        (9, "Word of Mouth"),
        (10, "Other"),
    ]);
    vec![
        Builder::new("account", "accounts", "Account", 1)
            .name("name", 160)
            .s("accountnumber", 20)
            .s("emailaddress1", 100)
            .s("telephone1", 50)
            .s("websiteurl", 200)
            .address()
            .t("revenue", ColumnType::Money)
            .t("numberofemployees", ColumnType::Integer)
            .t("donotbulkemail", ColumnType::Boolean)
            .t("donotphone", ColumnType::Boolean)
            .memo("description", 2000)
            .lookup("primarycontactid", &["contact"])
            .lookup("parentaccountid", &["account"])
            .lookup("originatingleadid", &["lead"])
            .merge_columns("account")
            .owner()
            .active_inactive()
            .key(&["accountnumber"])
            .build(),
        Builder::new("contact", "contacts", "Contact", 2)
            .name("fullname", 160)
            .s("firstname", 50)
            .s("lastname", 50)
            .s("emailaddress1", 100)
            .s("emailaddress2", 100)
            .s("telephone1", 50)
            .s("mobilephone", 50)
            .s("jobtitle", 100)
            .address()
            .t("donotbulkemail", ColumnType::Boolean)
            .t("donotphone", ColumnType::Boolean)
            .t("donotemail", ColumnType::Boolean)
            .memo("description", 2000)
            .lookup("parentcustomerid", &["account", "contact"])
            .lookup("originatingleadid", &["lead"])
            .merge_columns("contact")
            .owner()
            .active_inactive()
            .build(),
        Builder::new("lead", "leads", "Lead", 4)
            .name("fullname", 160)
            .s("firstname", 50)
            .s("lastname", 50)
            .s("subject", 300)
            .s("companyname", 100)
            .s("emailaddress1", 100)
            .s("telephone1", 50)
            .s("mobilephone", 50)
            .s("jobtitle", 100)
            .s("websiteurl", 200)
            .address()
            .t("leadsourcecode", lead_source)
            .t("revenue", ColumnType::Money)
            .t("numberofemployees", ColumnType::Integer)
            .t("donotbulkemail", ColumnType::Boolean)
            .t("donotphone", ColumnType::Boolean)
            .t("donotemail", ColumnType::Boolean)
            .memo("description", 2000)
            .t("mkt_leadscore", ColumnType::Integer)
            .t("mkt_relativescore", ColumnType::Integer)
            .s("mkt_priority", 100)
            .s("mkt_urgency", 100)
            .t("mkt_lastinterestingmomentdate", ColumnType::DateTime)
            .s("mkt_lastinterestingmomentdesc", 2000)
            .s("mkt_lastinterestingmomenttype", 100)
            .s("mkt_leadinterestingmomentsource", 100)
            .lookup("parentaccountid", &["account"])
            .lookup("parentcontactid", &["contact"])
            .lookup("qualifyingopportunityid", &["opportunity"])
            .readonly("qualifyingopportunityid")
            .merge_columns("lead")
            .owner()
            .state(
                &[(0, "Open"), (1, "Qualified"), (2, "Disqualified")],
                &[
                    (1, "New", 0),
                    (2, "Contacted", 0),
                    (3, "Qualified", 1),
                    (4, "Lost", 2),
                    (5, "Cannot Contact", 2),
                    (6, "No Longer Interested", 2),
                    (7, "Canceled", 2),
                ],
            )
            .build(),
        Builder::new("opportunity", "opportunities", "Opportunity", 3)
            .name("name", 300)
            .t("estimatedvalue", ColumnType::Money)
            .t("estimatedclosedate", ColumnType::DateTime)
            .t("closeprobability", ColumnType::Integer)
            .memo("description", 2000)
            .lookup("customerid", &["account", "contact"])
            .lookup("parentaccountid", &["account"])
            .lookup("parentcontactid", &["contact"])
            .lookup("originatingleadid", &["lead"])
            .owner()
            .state(
                &[(0, "Open"), (1, "Won"), (2, "Lost")],
                &[
                    (1, "In Progress", 0),
                    (2, "On Hold", 0),
                    (3, "Won", 1),
                    (4, "Canceled", 2),
                    (5, "Out-Sold", 2),
                ],
            )
            .build(),
        Builder::new("systemuser", "systemusers", "User", 8)
            .name("fullname", 200)
            .s("firstname", 64)
            .s("lastname", 64)
            .s("domainname", 1024)
            .s("internalemailaddress", 100)
            .s("title", 128)
            .t("isdisabled", ColumnType::Boolean)
            .create_only_false("isdisabled")
            .t("islicensed", ColumnType::Boolean)
            .t("isintegrationuser", ColumnType::Boolean)
            .t("applicationid", ColumnType::Uniqueidentifier)
            .t("azureactivedirectoryobjectid", ColumnType::Uniqueidentifier)
            .t(
                "accessmode",
                picklist(&[
                    (0, "Read-Write"),
                    (1, "Administrative"),
                    (2, "Read"),
                    (3, "Support User"),
                    (4, "Non-interactive"),
                    (5, "Delegated Admin"),
                ]),
            )
            .lookup("businessunitid", &["businessunit"])
            .required("businessunitid")
            .build(),
        Builder::new("role", "roles", "Security Role", 1036)
            .name("name", 100)
            .t("roletemplateid", ColumnType::Uniqueidentifier)
            .t("ismanaged", ColumnType::Boolean)
            .lookup("businessunitid", &["businessunit"])
            .required("businessunitid")
            .lookup("parentrootroleid", &["role"])
            .build(),
        Builder::new("team", "teams", "Team", 9)
            .name("name", 160)
            .t(
                "teamtype",
                picklist(&[
                    (0, "Owner"),
                    (1, "Access"),
                    (2, "AAD Security Group"),
                    (3, "AAD Office Group"),
                ]),
            )
            .t("isdefault", ColumnType::Boolean)
            .lookup("businessunitid", &["businessunit"])
            .required("businessunitid")
            .build(),
        Builder::new("businessunit", "businessunits", "Business Unit", 10)
            .name("name", 160)
            .lookup("parentbusinessunitid", &["businessunit"])
            .build(),
        Builder::new("organization", "organizations", "Organization", 1019)
            .name("name", 160)
            .t("languagecode", ColumnType::Integer)
            .t("expirechangetrackingindays", ColumnType::Integer)
            .no_tracking()
            .build(),
        Builder::new(
            "usersettings",
            "usersettingscollection",
            "User Settings",
            150,
        )
        .t("uilanguageid", ColumnType::Integer)
        .t("helplanguageid", ColumnType::Integer)
        .t("localeid", ColumnType::Integer)
        .t("timezonecode", ColumnType::Integer)
        .no_tracking()
        .build_with(|d| {
            d.primary_key = "systemuserid".into();
            d.columns[0].logical_name = "systemuserid".into();
            d.columns[0].schema_name = "SystemUserId".into();
            d.self_service = true;
        }),
        Builder::new("solution", "solutions", "Solution", 7100)
            .s("uniquename", 65)
            .name("friendlyname", 256)
            .s("version", 256)
            .t("ismanaged", ColumnType::Boolean)
            .t("isvisible", ColumnType::Boolean)
            .t("installedon", ColumnType::DateTime)
            .s("description", 2000)
            .build(),
        Builder::new(
            "solutioncomponent",
            "solutioncomponents",
            "Solution Component",
            7103,
        )
        .t(
            "componenttype",
            picklist(&[
                (1, "Entity"),
                (2, "Attribute"),
                (20, "Role"),
                (91, "Plugin Assembly"),
                (92, "SDK Message Processing Step"),
            ]),
        )
        .t("objectid", ColumnType::Uniqueidentifier)
        .t("rootcomponentbehavior", ColumnType::Integer)
        .lookup("solutionid", &["solution"])
        .no_tracking()
        .build(),
        Builder::new(
            "sdkmessageprocessingstep",
            "sdkmessageprocessingsteps",
            "Sdk Message Processing Step",
            4608,
        )
        .name("name", 256)
        .s("description", 256)
        .t("stage", ColumnType::Integer)
        .t("mode", ColumnType::Integer)
        .t("rank", ColumnType::Integer)
        .t("solutionid", ColumnType::Uniqueidentifier)
        .state(
            &[(0, "Enabled"), (1, "Disabled")],
            &[(1, "Enabled", 0), (2, "Disabled", 1)],
        )
        .no_tracking()
        .build(),
        Builder::new(
            "mkt_marketoconfig",
            "mkt_marketoconfigs",
            "Marketo Config",
            10010,
        )
        .name("mkt_name", 100)
        .lookup("mkt_marketouserid", &["systemuser"])
        .owner()
        .active_inactive()
        .build_with(|d| d.custom_entity = true),
    ]
}

impl Builder {
    fn build_with(mut self, f: impl FnOnce(&mut EntityDef)) -> EntityDef {
        f(&mut self.def);
        self.def
    }
}

/// Publisher prefixes accepted for custom columns (`new_` default publisher, `mkt_` Marketo).
pub const CUSTOM_PREFIXES: &[&str] = &["new_", "mkt_", "mdsync_", "cr"];

#[cfg(test)]
mod schema_name_tests {
    use super::schema_case;

    #[test]
    fn schema_names_follow_dataverse_casing() {
        for (l, s) in [
            ("emailaddress1", "EMailAddress1"),
            ("donotbulkemail", "DoNotBulkEMail"),
            ("address1_stateorprovince", "Address1_StateOrProvince"),
            ("websiteurl", "WebSiteURL"),
            ("parentcustomerid", "ParentCustomerId"),
            ("systemuser", "SystemUser"),
            ("internalemailaddress", "InternalEMailAddress"),
            ("mkt_leadscore", "mkt_LeadScore"),
            ("createdby", "CreatedBy"),
        ] {
            assert_eq!(schema_case(l), s);
        }
    }
}
