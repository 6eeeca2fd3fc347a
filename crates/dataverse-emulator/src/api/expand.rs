//! `$expand` of navigation properties: single-valued lookups (`primarycontactid($select=fullname)`,
//! `parentcustomerid_account`) and the N:N relationships (`systemuserroles_association`), with a
//! nested `$select`. Nested `$filter`/`$orderby`/`$expand` are rejected with a 400.

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
        };
        out.insert(e.nav.clone(), value);
    }
    Ok(())
}
