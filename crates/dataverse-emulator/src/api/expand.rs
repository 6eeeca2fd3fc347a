//! `$expand` of navigation properties: single-valued lookups (`primarycontactid($select=fullname)`,
//! `parentcustomerid_account`, `ownerid`, `createdby`), the main 1:N relationships
//! (`contact_customer_accounts`, see [`ONE_TO_MANY`]) and the N:N relationships
//! (`systemuserroles_association`), with a nested `$select`. Nested `$filter`/`$orderby`/`$top`/
//! `$expand` are rejected with a 400 `0x80060888`.

use axum::http::StatusCode;
use serde_json::{Map, Value};

use super::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::records::{Annotations, nav_column, project};
use crate::schema::{ColumnType, EntityDef};
use crate::security::READ;
use crate::store::{self, Row};

/// The service's limit on expanded navigation properties per query.
pub const MAX_EXPANDS: usize = 15;

/// Most rows of a collection-valued expansion (the service's page size for nested collections).
pub const MAX_EXPANDED_ROWS: usize = 5000;

/// The main 1:N relationships, as (navigation property, referenced table, referencing table,
/// lookup column on the referencing table). Names as in the service's `$metadata`.
pub const ONE_TO_MANY: &[(&str, &str, &str, &str)] = &[
    (
        "contact_customer_accounts",
        "account",
        "contact",
        "parentcustomerid",
    ),
    (
        "contact_customer_contacts",
        "contact",
        "contact",
        "parentcustomerid",
    ),
    (
        "account_primary_contact",
        "contact",
        "account",
        "primarycontactid",
    ),
    (
        "account_parent_account",
        "account",
        "account",
        "parentaccountid",
    ),
    ("lead_parent_account", "account", "lead", "parentaccountid"),
    ("lead_parent_contact", "contact", "lead", "parentcontactid"),
    (
        "opportunity_customer_accounts",
        "account",
        "opportunity",
        "customerid",
    ),
    (
        "opportunity_customer_contacts",
        "contact",
        "opportunity",
        "customerid",
    ),
    (
        "opportunity_parent_account",
        "account",
        "opportunity",
        "parentaccountid",
    ),
    (
        "opportunity_parent_contact",
        "contact",
        "opportunity",
        "parentcontactid",
    ),
];

/// The 1:N relationship `nav` of `entity`: (referencing table, lookup column).
pub fn one_to_many(entity: &str, nav: &str) -> Option<(&'static str, &'static str)> {
    ONE_TO_MANY
        .iter()
        .find(|(n, from, _, _)| *n == nav && *from == entity)
        .map(|(_, _, t, c)| (*t, *c))
}

enum Kind {
    /// Lookup column (wire name) and, for `x_account`-style names, the only target allowed.
    Single {
        wire: String,
        target: Option<String>,
    },
    /// N:N relationship; whether the entity is on its `a` side; the other table.
    Many {
        rel: &'static str,
        a_side: bool,
        other: &'static str,
    },
    /// 1:N relationship: the referencing table and its lookup column (wire name).
    OneToMany { table: &'static str, wire: String },
}

/// One parsed `$expand` item.
pub struct Expand {
    nav: String,
    select: Option<Vec<String>>,
    kind: Kind,
}

pub(crate) fn split_top(s: &str, sep: char) -> Vec<String> {
    let (mut out, mut cur, mut depth, mut q) = (Vec::new(), String::new(), 0i32, false);
    for ch in s.chars() {
        match ch {
            '\'' => q = !q,
            '(' if !q => depth += 1,
            ')' if !q => depth -= 1,
            _ => {}
        }
        if ch == sep && depth == 0 && !q {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(ch);
        }
    }
    out.push(cur);
    out
}

fn query_error(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "0x80060888", message)
}

/// Parses and validates `$expand` against the table metadata.
pub fn parse(def: &EntityDef, value: &str) -> ApiResult<Vec<Expand>> {
    let mut out = Vec::new();
    for item in split_top(value, ',')
        .into_iter()
        .map(|s| s.trim().to_string())
    {
        if item.is_empty() {
            return Err(query_error(format!("Syntax error in $expand '{value}'.")));
        }
        let (nav, options) = match item.find('(') {
            Some(i) if item.ends_with(')') => (
                item[..i].trim().to_string(),
                item[i + 1..item.len() - 1].to_string(),
            ),
            Some(_) => return Err(query_error(format!("Syntax error in $expand '{value}'."))),
            None => (item.clone(), String::new()),
        };
        let kind = if let Some(col) = nav_column(def, &nav) {
            let target = match &col.ty {
                ColumnType::Lookup { targets } => targets
                    .iter()
                    .find(|t| nav == format!("{}_{}", col.logical_name, t))
                    .cloned(),
                _ => None,
            };
            Kind::Single {
                wire: col.wire_name(),
                target,
            }
        } else if let Some((rel, a_side, other)) =
            super::refs::relationship(&def.logical_name, &nav)
        {
            Kind::Many { rel, a_side, other }
        } else if let Some((table, column)) = one_to_many(&def.logical_name, &nav) {
            Kind::OneToMany {
                table,
                wire: format!("_{column}_value"),
            }
        } else {
            return Err(query_error(format!(
                "Could not find a property named '{nav}' on type '{}'.",
                def.type_name()
            )));
        };
        let mut select = None;
        for opt in split_top(&options, ';')
            .into_iter()
            .filter(|o| !o.trim().is_empty())
        {
            let (k, v) = opt.split_once('=').unwrap_or((opt.as_str(), ""));
            match k.trim() {
                "$select" => select = Some(mdsync_odata::parse_select(v.trim())?),
                other => {
                    return Err(query_error(format!(
                        "The query option '{other}' inside $expand is not supported by the emulator."
                    )));
                }
            }
        }
        out.push(Expand { nav, select, kind });
    }
    if out.len() > MAX_EXPANDS {
        return Err(query_error(format!(
            "The number of expanded navigation properties exceeds the limit of {MAX_EXPANDS}."
        )));
    }
    Ok(out)
}

/// Adds the expanded navigation properties of `row` to its rendered form.
pub fn apply(
    ctx: &Ctx<'_>,
    def: &EntityDef,
    row: &Row,
    out: &mut Map<String, Value>,
    expands: &[Expand],
) -> ApiResult<()> {
    let none = Annotations::default();
    for e in expands {
        let value = match &e.kind {
            Kind::Single { wire, target } => {
                let id = row.get(wire).and_then(Value::as_str);
                let actual = row
                    .get(&format!("{wire}@Microsoft.Dynamics.CRM.lookuplogicalname"))
                    .and_then(Value::as_str);
                let target_name = target.as_deref().or(actual);
                match (id, target_name) {
                    (Some(id), Some(t)) if target.is_none() || actual == Some(t) => {
                        let tdef = ctx
                            .schema
                            .by_logical(t)
                            .ok_or_else(|| ApiError::internal("lookup target table missing"))?;
                        ctx.caller.check(&tdef, READ)?;
                        match store::get(ctx.conn, &tdef, id)? {
                            Some(trow) => {
                                Value::Object(project(&tdef, &trow, e.select.as_deref(), &none))
                            }
                            None => Value::Null,
                        }
                    }
                    _ => Value::Null,
                }
            }
            Kind::Many { rel, a_side, other } => {
                let tdef = ctx
                    .schema
                    .by_logical(other)
                    .ok_or_else(|| ApiError::internal("relationship table missing"))?;
                ctx.caller.check(&tdef, READ)?;
                let Some(id) = row.get(&def.primary_key).and_then(Value::as_str) else {
                    continue;
                };
                let id = id.to_string();
                let ids = if *a_side {
                    store::linked_b(ctx.conn, rel, &id)?
                } else {
                    store::linked_a(ctx.conn, rel, &id)?
                };
                let mut items = Vec::with_capacity(ids.len());
                for oid in ids {
                    if let Some(trow) = store::get(ctx.conn, &tdef, &oid)? {
                        items.push(Value::Object(project(
                            &tdef,
                            &trow,
                            e.select.as_deref(),
                            &none,
                        )));
                    }
                }
                Value::Array(items)
            }
            Kind::OneToMany { table, wire } => {
                let tdef = ctx
                    .schema
                    .by_logical(table)
                    .ok_or_else(|| ApiError::internal("relationship table missing"))?;
                ctx.caller.check(&tdef, READ)?;
                let Some(id) = row.get(&def.primary_key).and_then(Value::as_str) else {
                    continue;
                };
                let rows = store::referencing(ctx.conn, &tdef, wire, id, MAX_EXPANDED_ROWS)?;
                Value::Array(
                    rows.iter()
                        .map(|r| Value::Object(project(&tdef, r, e.select.as_deref(), &none)))
                        .collect(),
                )
            }
        };
        out.insert(e.nav.clone(), value);
    }
    Ok(())
}
