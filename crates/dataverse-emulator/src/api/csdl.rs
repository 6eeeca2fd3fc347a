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
        x.push_str("</EntityType>");
    }
    x.push_str(r#"<ComplexType Name="WhoAmIResponse"><Property Name="BusinessUnitId" Type="Edm.Guid" Nullable="false"/><Property Name="UserId" Type="Edm.Guid" Nullable="false"/><Property Name="OrganizationId" Type="Edm.Guid" Nullable="false"/></ComplexType>"#);
    x.push_str(r#"<ComplexType Name="RetrieveVersionResponse"><Property Name="Version" Type="Edm.String" Unicode="false"/></ComplexType>"#);
    x.push_str(r#"<ComplexType Name="CreateMultipleResponse"><Property Name="Ids" Type="Collection(Edm.Guid)" Nullable="false"/></ComplexType>"#);
    x.push_str(r#"<Function Name="WhoAmI"><ReturnType Type="mscrm.WhoAmIResponse" Nullable="false"/></Function>"#);
    x.push_str(r#"<Function Name="RetrieveVersion"><ReturnType Type="mscrm.RetrieveVersionResponse" Nullable="false"/></Function>"#);
    x.push_str(r#"<Action Name="PublishAllXml"/>"#);
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
    x.push_str(r#"<FunctionImport Name="WhoAmI" Function="Microsoft.Dynamics.CRM.WhoAmI"/><FunctionImport Name="RetrieveVersion" Function="Microsoft.Dynamics.CRM.RetrieveVersion"/><ActionImport Name="PublishAllXml" Action="Microsoft.Dynamics.CRM.PublishAllXml"/>"#);
    x.push_str("</EntityContainer></Schema></edmx:DataServices></edmx:Edmx>");
    Ok(Reply {
        status: StatusCode::OK,
        headers: Vec::new(),
        body: Body::Text(x, "application/xml"),
    })
}
