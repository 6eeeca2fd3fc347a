//! `$metadata`: the CSDL document generated from the live table metadata (custom columns included).

use std::fmt::Write;

use axum::http::{Method, StatusCode};

use super::{Body, Ctx, Reply, Req, query_pairs};
use crate::error::{ApiError, ApiResult};
use crate::schema::ColumnType;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The metadata API's types (`EntityDefinitions`), reduced to what the emulator returns.
fn metadata_types(x: &mut String) {
    let strings = |x: &mut String, names: &[&str]| {
        for n in names {
            let _ = write!(x, r#"<Property Name="{n}" Type="Edm.String"/>"#);
        }
    };
    let bools = |x: &mut String, names: &[&str]| {
        for n in names {
            let _ = write!(x, r#"<Property Name="{n}" Type="Edm.Boolean"/>"#);
        }
    };
    x.push_str(r#"<ComplexType Name="LocalizedLabel"><Property Name="Label" Type="Edm.String"/><Property Name="LanguageCode" Type="Edm.Int32" Nullable="false"/><Property Name="IsManaged" Type="Edm.Boolean"/><Property Name="MetadataId" Type="Edm.Guid"/><Property Name="HasChanged" Type="Edm.Boolean"/></ComplexType>"#);
    x.push_str(r#"<ComplexType Name="Label"><Property Name="LocalizedLabels" Type="Collection(mscrm.LocalizedLabel)" Nullable="false"/><Property Name="UserLocalizedLabel" Type="mscrm.LocalizedLabel"/></ComplexType>"#);
    x.push_str(r#"<EntityType Name="MetadataBase" Abstract="true"><Key><PropertyRef Name="MetadataId"/></Key><Property Name="MetadataId" Type="Edm.Guid" Nullable="false"/><Property Name="HasChanged" Type="Edm.Boolean"/></EntityType>"#);
    x.push_str(r#"<EntityType Name="EntityMetadata" BaseType="mscrm.MetadataBase">"#);
    strings(
        x,
        &[
            "LogicalName",
            "SchemaName",
            "EntitySetName",
            "LogicalCollectionName",
            "CollectionSchemaName",
            "PrimaryIdAttribute",
            "PrimaryNameAttribute",
            "PrimaryImageAttribute",
            "OwnershipType",
            "TableType",
            "IntroducedVersion",
            "EntityColor",
        ],
    );
    bools(
        x,
        &[
            "ChangeTrackingEnabled",
            "IsCustomEntity",
            "IsPrivate",
            "IsActivity",
            "IsActivityParty",
            "IsIntersect",
            "IsLogicalEntity",
            "IsManaged",
            "IsValidForAdvancedFind",
            "IsAvailableOffline",
            "IsBPFEntity",
            "HasNotes",
            "HasActivities",
        ],
    );
    x.push_str(r#"<Property Name="ObjectTypeCode" Type="Edm.Int32"/><Property Name="DisplayName" Type="mscrm.Label"/><Property Name="DisplayCollectionName" Type="mscrm.Label"/><Property Name="Description" Type="mscrm.Label"/>"#);
    x.push_str(r#"<NavigationProperty Name="Attributes" Type="Collection(mscrm.AttributeMetadata)"/><NavigationProperty Name="Keys" Type="Collection(mscrm.EntityKeyMetadata)"/></EntityType>"#);
    x.push_str(r#"<EntityType Name="AttributeMetadata" BaseType="mscrm.MetadataBase">"#);
    strings(
        x,
        &[
            "LogicalName",
            "SchemaName",
            "EntityLogicalName",
            "AttributeType",
        ],
    );
    bools(
        x,
        &[
            "IsCustomAttribute",
            "IsPrimaryId",
            "IsPrimaryName",
            "IsValidForCreate",
            "IsValidForRead",
            "IsValidForUpdate",
        ],
    );
    x.push_str(r#"<Property Name="DisplayName" Type="mscrm.Label"/></EntityType>"#);
    x.push_str(r#"<EntityType Name="OptionSetMetadataBase" BaseType="mscrm.MetadataBase"><Property Name="OptionSetType" Type="Edm.String"/></EntityType>"#);
    x.push_str(r#"<EntityType Name="EnumAttributeMetadata" BaseType="mscrm.AttributeMetadata" Abstract="true"><NavigationProperty Name="OptionSet" Type="mscrm.OptionSetMetadataBase"/><NavigationProperty Name="GlobalOptionSet" Type="mscrm.OptionSetMetadataBase"/></EntityType>"#);
    for (t, base) in [
        ("PicklistAttributeMetadata", "EnumAttributeMetadata"),
        ("StateAttributeMetadata", "EnumAttributeMetadata"),
        ("StatusAttributeMetadata", "EnumAttributeMetadata"),
        ("BooleanAttributeMetadata", "AttributeMetadata"),
        ("StringAttributeMetadata", "AttributeMetadata"),
        ("MemoAttributeMetadata", "AttributeMetadata"),
        ("IntegerAttributeMetadata", "AttributeMetadata"),
        ("BigIntAttributeMetadata", "AttributeMetadata"),
        ("DecimalAttributeMetadata", "AttributeMetadata"),
        ("MoneyAttributeMetadata", "AttributeMetadata"),
        ("DoubleAttributeMetadata", "AttributeMetadata"),
        ("DateTimeAttributeMetadata", "AttributeMetadata"),
        ("UniqueIdentifierAttributeMetadata", "AttributeMetadata"),
        ("LookupAttributeMetadata", "AttributeMetadata"),
    ] {
        let _ = write!(x, r#"<EntityType Name="{t}" BaseType="mscrm.{base}">"#);
        match t {
            "StringAttributeMetadata" | "MemoAttributeMetadata" => {
                x.push_str(r#"<Property Name="MaxLength" Type="Edm.Int32"/><Property Name="Format" Type="Edm.String"/>"#)
            }
            "LookupAttributeMetadata" => {
                x.push_str(r#"<Property Name="Targets" Type="Collection(Edm.String)"/>"#)
            }
            "BooleanAttributeMetadata" => x.push_str(r#"<Property Name="DefaultValue" Type="Edm.Boolean"/><NavigationProperty Name="OptionSet" Type="mscrm.OptionSetMetadataBase"/><NavigationProperty Name="GlobalOptionSet" Type="mscrm.OptionSetMetadataBase"/>"#),
            _ => {}
        }
        x.push_str("</EntityType>");
    }
    x.push_str(r#"<EntityType Name="EntityKeyMetadata" BaseType="mscrm.MetadataBase">"#);
    strings(
        x,
        &[
            "LogicalName",
            "SchemaName",
            "EntityLogicalName",
            "EntityKeyIndexStatus",
            "IntroducedVersion",
        ],
    );
    bools(x, &["IsManaged", "IsSynchronous", "IsExportKey"]);
    x.push_str(r#"<Property Name="KeyAttributes" Type="Collection(Edm.String)"/><Property Name="DisplayName" Type="mscrm.Label"/></EntityType>"#);
}

pub fn metadata(ctx: &mut Ctx<'_>, req: &Req) -> ApiResult<Reply> {
    if req.method != Method::GET {
        return Err(ApiError::method_not_allowed());
    }
    let annotations = query_pairs(&req.query)
        .iter()
        .any(|(k, v)| k == "annotations" && v == "true");
    let mut x = String::with_capacity(64 * 1024);
    x.push_str(r#"<?xml version="1.0" encoding="utf-8"?><edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">"#);
    x.push_str(r#"<edmx:Reference Uri="http://vocabularies.odata.org/OData.Community.Keys.V1.xml"><edmx:Include Namespace="OData.Community.Keys.V1" Alias="Keys"/></edmx:Reference>"#);
    x.push_str(r#"<edmx:Reference Uri="http://vocabularies.odata.org/OData.Community.Display.V1.xml"><edmx:Include Namespace="OData.Community.Display.V1" Alias="Display"/></edmx:Reference>"#);
    x.push_str(r#"<edmx:Reference Uri="https://oasis-tcs.github.io/odata-vocabularies/vocabularies/Org.OData.Capabilities.V1.xml"><edmx:Include Namespace="Org.OData.Capabilities.V1" Alias="Capabilities"/></edmx:Reference>"#);
    x.push_str(r#"<edmx:DataServices><Schema Namespace="Microsoft.Dynamics.CRM" Alias="mscrm" xmlns="http://docs.oasis-open.org/odata/ns/edm">"#);
    x.push_str(r#"<EntityType Name="crmbaseentity" Abstract="true"/>"#);
    for e in &ctx.schema.entities {
        let _ = write!(
            x,
            r#"<EntityType Name="{}" BaseType="mscrm.crmbaseentity"><Key><PropertyRef Name="{}"/></Key>"#,
            e.logical_name, e.primary_key
        );
        for c in &e.columns {
            let mut extra = String::new();
            if let ColumnType::String { max_len } | ColumnType::Memo { max_len } = c.ty {
                let _ = write!(extra, r#" MaxLength="{max_len}""#);
            }
            let _ = write!(
                x,
                r#"<Property Name="{}" Type="{}"{extra}"#,
                c.wire_name(),
                c.ty.edm_type()
            );
            if c.ty.edm_type() == "Edm.Decimal" {
                x.push_str(r#" Scale="Variable""#);
            }
            x.push_str("/>");
        }
        for c in &e.columns {
            if let ColumnType::Lookup { targets } = &c.ty {
                for t in targets {
                    let name = if targets.len() > 1 && c.logical_name != "ownerid" {
                        format!("{}_{}", c.logical_name, t)
                    } else {
                        c.logical_name.clone()
                    };
                    let _ = write!(
                        x,
                        r#"<NavigationProperty Name="{}" Type="mscrm.{t}" Nullable="false" Partner="{}_{}"><ReferentialConstraint Property="_{}_value" ReferencedProperty="{t}id"/></NavigationProperty>"#,
                        esc(&name),
                        e.logical_name,
                        esc(&name),
                        c.logical_name
                    );
                    if c.logical_name == "ownerid" {
                        break;
                    }
                }
            }
        }
        for (rel, a, b) in super::refs::RELATIONSHIPS {
            let other = if *a == e.logical_name {
                Some(b)
            } else if *b == e.logical_name {
                Some(a)
            } else {
                None
            };
            if let Some(o) = other {
                let _ = write!(
                    x,
                    r#"<NavigationProperty Name="{rel}" Type="Collection(mscrm.{o})" Partner="{rel}"/>"#
                );
            }
        }
        for (rel, from, to, col) in super::expand::ONE_TO_MANY {
            if *from == e.logical_name {
                let partner = if matches!(*col, "parentcustomerid" | "customerid") {
                    format!("{col}_{from}")
                } else {
                    col.to_string()
                };
                let _ = write!(
                    x,
                    r#"<NavigationProperty Name="{rel}" Type="Collection(mscrm.{to})" Partner="{partner}"/>"#
                );
            }
        }
        if !e.alternate_keys.is_empty() {
            x.push_str(r#"<Annotation Term="OData.Community.Keys.V1.AlternateKeys"><Collection>"#);
            for key in &e.alternate_keys {
                x.push_str(r#"<Record Type="OData.Community.Keys.V1.AlternateKey"><PropertyValue Property="Key"><Collection>"#);
                for c in key {
                    let _ = write!(
                        x,
                        r#"<Record Type="OData.Community.Keys.V1.PropertyRef"><PropertyValue Property="Alias" String="{c}"/><PropertyValue Property="Name" PropertyPath="{c}"/></Record>"#
                    );
                }
                x.push_str("</Collection></PropertyValue></Record>");
            }
            x.push_str("</Collection></Annotation>");
        }
        x.push_str("</EntityType>");
    }
    metadata_types(&mut x);
    x.push_str(r#"<ComplexType Name="WhoAmIResponse"><Property Name="BusinessUnitId" Type="Edm.Guid" Nullable="false"/><Property Name="UserId" Type="Edm.Guid" Nullable="false"/><Property Name="OrganizationId" Type="Edm.Guid" Nullable="false"/></ComplexType>"#);
    x.push_str(r#"<ComplexType Name="RetrieveVersionResponse"><Property Name="Version" Type="Edm.String" Unicode="false"/></ComplexType>"#);
    x.push_str(r#"<ComplexType Name="CreateMultipleResponse"><Property Name="Ids" Type="Collection(Edm.Guid)" Nullable="false"/></ComplexType>"#);
    x.push_str(r#"<Function Name="WhoAmI"><ReturnType Type="mscrm.WhoAmIResponse" Nullable="false"/></Function>"#);
    x.push_str(r#"<Function Name="RetrieveVersion"><ReturnType Type="mscrm.RetrieveVersionResponse" Nullable="false"/></Function>"#);
    x.push_str(r#"<Action Name="PublishAllXml"/>"#);
    x.push_str(r#"<Action Name="QualifyLead" IsBound="true"><Parameter Name="entity" Type="mscrm.lead" Nullable="false"/><Parameter Name="CreateAccount" Type="Edm.Boolean" Nullable="false"/><Parameter Name="CreateContact" Type="Edm.Boolean" Nullable="false"/><Parameter Name="CreateOpportunity" Type="Edm.Boolean" Nullable="false"/><Parameter Name="OpportunityCurrencyId" Type="mscrm.crmbaseentity"/><Parameter Name="OpportunityCustomerId" Type="mscrm.crmbaseentity"/><Parameter Name="SourceCampaignId" Type="mscrm.crmbaseentity"/><Parameter Name="Status" Type="Edm.Int32" Nullable="false"/><Parameter Name="SuppressDuplicateDetection" Type="Edm.Boolean"/><ReturnType Type="Collection(mscrm.crmbaseentity)" Nullable="false"/></Action>"#);
    x.push_str(r#"<Action Name="Merge"><Parameter Name="Target" Type="mscrm.crmbaseentity" Nullable="false"/><Parameter Name="Subordinate" Type="mscrm.crmbaseentity" Nullable="false"/><Parameter Name="UpdateContent" Type="mscrm.crmbaseentity" Nullable="false"/><Parameter Name="PerformParentingChecks" Type="Edm.Boolean" Nullable="false"/></Action>"#);
    for (op, ret) in [
        ("CreateMultiple", Some("mscrm.CreateMultipleResponse")),
        ("UpdateMultiple", None),
        ("UpsertMultiple", None),
    ] {
        let _ = write!(
            x,
            r#"<Action Name="{op}" IsBound="true"><Parameter Name="entityset" Type="Collection(mscrm.crmbaseentity)" Nullable="false"/><Parameter Name="Targets" Type="Collection(mscrm.crmbaseentity)" Nullable="false"/>"#
        );
        if let Some(r) = ret {
            let _ = write!(x, r#"<ReturnType Type="{r}" Nullable="false"/>"#);
        }
        x.push_str("</Action>");
    }
    x.push_str(r#"<EntityContainer Name="System">"#);
    for e in &ctx.schema.entities {
        let _ = write!(
            x,
            r#"<EntitySet Name="{}" EntityType="Microsoft.Dynamics.CRM.{}">"#,
            e.set_name, e.logical_name
        );
        if annotations && e.change_tracking {
            x.push_str(r#"<Annotation Term="Org.OData.Capabilities.V1.ChangeTracking"><Record><PropertyValue Property="Supported" Bool="true"/></Record></Annotation>"#);
        }
        x.push_str("</EntitySet>");
    }
    x.push_str(r#"<EntitySet Name="EntityDefinitions" EntityType="Microsoft.Dynamics.CRM.EntityMetadata"/>"#);
    x.push_str(r#"<FunctionImport Name="WhoAmI" Function="Microsoft.Dynamics.CRM.WhoAmI"/><FunctionImport Name="RetrieveVersion" Function="Microsoft.Dynamics.CRM.RetrieveVersion"/><ActionImport Name="PublishAllXml" Action="Microsoft.Dynamics.CRM.PublishAllXml"/><ActionImport Name="Merge" Action="Microsoft.Dynamics.CRM.Merge"/>"#);
    x.push_str("</EntityContainer></Schema></edmx:DataServices></edmx:Edmx>");
    Ok(Reply {
        status: StatusCode::OK,
        headers: Vec::new(),
        body: Body::Text(x, "application/xml"),
    })
}
