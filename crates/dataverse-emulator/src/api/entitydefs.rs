//! Metadata API: `EntityDefinitions`, `EntityDefinitions(LogicalName='lead')`, its `Attributes`
//! (list, by logical name or id) and `POST .../Attributes` creating custom columns that then behave
//! like built-in ones everywhere (CRUD, `$select`, `$filter`, `$metadata`).

use axum::http::{Method, StatusCode};
use serde_json::{Map, Value, json};

use super::{Ctx, Reply, Req, json_body, query_pairs};
use crate::error::{ApiError, ApiResult};
use crate::path::{Key, Segment};
use crate::schema::{CUSTOM_PREFIXES, ColumnDef, ColumnType, EntityDef, stable_uuid};
use crate::store;

fn label(text: &str) -> Value {
    let l = json!({"Label": text, "LanguageCode": 1033, "IsManaged": false, "MetadataId": stable_uuid(&format!("label:{text}")), "HasChanged": null});
    json!({"LocalizedLabels": [l.clone()], "UserLocalizedLabel": l})
}

fn type_name_value(c: &ColumnDef) -> &'static str {
    match c.ty.attribute_type() {
        "String" => "StringType",
        "Memo" => "MemoType",
        "Integer" => "IntegerType",
        "BigInt" => "BigIntType",
        "Decimal" => "DecimalType",
        "Money" => "MoneyType",
        "Double" => "DoubleType",
        "Boolean" => "BooleanType",
        "DateTime" => "DateTimeType",
        "Uniqueidentifier" => "UniqueidentifierType",
        "Picklist" => "PicklistType",
        "State" => "StateType",
        "Status" => "StatusType",
        "Customer" => "CustomerType",
        "Owner" => "OwnerType",
        _ => "LookupType",
    }
}

/// AttributeMetadata JSON for a column.
pub fn attribute_json(def: &EntityDef, c: &ColumnDef) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "@odata.type".into(),
        json!(format!("#Microsoft.Dynamics.CRM.{}", c.ty.metadata_type())),
    );
    m.insert("MetadataId".into(), json!(c.metadata_id));
    m.insert("LogicalName".into(), json!(c.logical_name));
    m.insert("SchemaName".into(), json!(c.schema_name));
    m.insert("EntityLogicalName".into(), json!(def.logical_name));
    m.insert("AttributeType".into(), json!(c.ty.attribute_type()));
    m.insert(
        "AttributeTypeName".into(),
        json!({"Value": type_name_value(c)}),
    );
    m.insert("IsCustomAttribute".into(), json!(c.custom));
    m.insert(
        "IsPrimaryId".into(),
        json!(c.logical_name == def.primary_key),
    );
    m.insert(
        "IsPrimaryName".into(),
        json!(def.primary_name.as_deref() == Some(c.logical_name.as_str())),
    );
    m.insert("IsValidForCreate".into(), json!(c.valid_for_create));
    m.insert("IsValidForRead".into(), json!(true));
    m.insert("IsValidForUpdate".into(), json!(c.valid_for_update));
    m.insert("IsValidForAdvancedFind".into(), json!({"Value": true, "CanBeChanged": true, "ManagedPropertyLogicalName": "canmodifysearchsettings"}));
    m.insert(
        "RequiredLevel".into(),
        json!({"Value": if c.required { "SystemRequired" } else { "None" }, "CanBeChanged": !c.required, "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings"}),
    );
    m.insert("DisplayName".into(), label(&c.display_name));
    match &c.ty {
        ColumnType::String { max_len } | ColumnType::Memo { max_len } => {
            m.insert("MaxLength".into(), json!(max_len));
            m.insert("Format".into(), json!("Text"));
        }
        ColumnType::Lookup { targets } => {
            m.insert("Targets".into(), json!(targets));
        }
        ColumnType::Boolean => {
            m.insert("DefaultValue".into(), json!(false));
            m.insert(
                "OptionSet".into(),
                json!({"OptionSetType": "Boolean", "TrueOption": {"Value": 1, "Label": label("Yes")}, "FalseOption": {"Value": 0, "Label": label("No")}}),
            );
        }
        ColumnType::Picklist { options } | ColumnType::State { options } => {
            let opts: Vec<Value> = options
                .iter()
                .map(|(v, l)| json!({"Value": v, "Label": label(l)}))
                .collect();
            m.insert(
                "OptionSet".into(),
                json!({"OptionSetType": "Picklist", "Options": opts}),
            );
        }
        ColumnType::Status { options } => {
            let opts: Vec<Value> = options
                .iter()
                .map(|(v, l, s)| json!({"Value": v, "State": s, "Label": label(l)}))
                .collect();
            m.insert(
                "OptionSet".into(),
                json!({"OptionSetType": "Status", "Options": opts}),
            );
        }
        _ => {}
    }
    m
}

/// EntityMetadata JSON (without attributes).
pub fn entity_json(def: &EntityDef) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("MetadataId".into(), json!(def.metadata_id));
    m.insert("LogicalName".into(), json!(def.logical_name));
    m.insert("SchemaName".into(), json!(def.schema_name));
    m.insert("EntitySetName".into(), json!(def.set_name));
    m.insert("LogicalCollectionName".into(), json!(def.set_name));
    m.insert("PrimaryIdAttribute".into(), json!(def.primary_key));
    m.insert("PrimaryNameAttribute".into(), json!(def.primary_name));
    m.insert("ObjectTypeCode".into(), json!(def.object_type_code));
    m.insert("ChangeTrackingEnabled".into(), json!(def.change_tracking));
    m.insert("IsCustomEntity".into(), json!(def.custom_entity));
    m.insert(
        "OwnershipType".into(),
        json!(if def.user_owned {
            "UserOwned"
        } else {
            "OrganizationOwned"
        }),
    );
    m.insert("DisplayName".into(), label(&def.display_name));
    m.insert("DisplayCollectionName".into(), label(&def.set_name));
    m.insert("Description".into(), label(""));
    m.insert("IsPrivate".into(), json!(false));
    m.insert("IsActivity".into(), json!(false));
    m.insert("IsActivityParty".into(), json!(false));
    m.insert("IsIntersect".into(), json!(false));
    m.insert("IsLogicalEntity".into(), json!(false));
    m.insert("IsManaged".into(), json!(!def.custom_entity));
    m.insert("IsValidForAdvancedFind".into(), json!(true));
    m.insert("IsAvailableOffline".into(), json!(true));
    m.insert("IsBPFEntity".into(), json!(false));
    m.insert("IsCustomizable".into(), json!({"Value": true, "CanBeChanged": true, "ManagedPropertyLogicalName": "iscustomizable"}));
    m.insert("TableType".into(), json!("Standard"));
    m.insert("HasNotes".into(), json!(false));
    m.insert("HasActivities".into(), json!(false));
    m.insert("PrimaryImageAttribute".into(), Value::Null);
    m.insert("EntityColor".into(), Value::Null);
    m.insert("IntroducedVersion".into(), json!("5.0.0.0"));
    m
}

/// `$select`/`$filter`/`$expand` of a metadata query (nested ones come from `$expand=X(...)`).
#[derive(Default)]
struct MetaQuery {
    filter: Option<mdsync_odata::Expr>,
    select: Option<Vec<String>>,
    expand: Vec<(String, MetaQuery)>,
}

fn meta_error(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "0x80060888", message)
}

impl MetaQuery {
    fn parse(pairs: &[(String, String)], aliases: &mdsync_odata::Aliases) -> ApiResult<Self> {
        let mut q = MetaQuery::default();
        for (k, v) in pairs {
            match k.as_str() {
                "$filter" => q.filter = Some(mdsync_odata::parse_filter(v, aliases)?),
                "$select" => q.select = Some(v.split(',').map(|s| s.trim().to_string()).collect()),
                "$expand" => {
                    for item in super::expand::split_top(v, ',') {
                        let item = item.trim();
                        let (nav, inner) = match item.find('(') {
                            Some(i) if item.ends_with(')') => {
                                (item[..i].trim(), &item[i + 1..item.len() - 1])
                            }
                            Some(_) => {
                                return Err(meta_error(format!("Syntax error in $expand '{v}'.")));
                            }
                            None => (item, ""),
                        };
                        if nav.is_empty() {
                            return Err(meta_error(format!("Syntax error in $expand '{v}'.")));
                        }
                        let nested: Vec<(String, String)> = super::expand::split_top(inner, ';')
                            .into_iter()
                            .filter(|o| !o.trim().is_empty())
                            .map(|o| match o.split_once('=') {
                                Some((a, b)) => (a.trim().to_string(), b.trim().to_string()),
                                None => (o.trim().to_string(), String::new()),
                            })
                            .collect();
                        q.expand
                            .push((nav.to_string(), MetaQuery::parse(&nested, aliases)?));
                    }
                }
                other if other.starts_with('$') => {
                    return Err(meta_error(format!(
                        "The query parameter {other} is not supported for metadata queries."
                    )));
                }
                _ => {}
            }
        }
        Ok(q)
    }

    fn from_query(query: &str) -> ApiResult<Self> {
        let pairs = query_pairs(query);
        let aliases: mdsync_odata::Aliases = pairs
            .iter()
            .filter(|(k, _)| k.starts_with('@'))
            .cloned()
            .collect();
        let pairs: Vec<_> = pairs
            .into_iter()
            .filter(|(k, _)| !k.starts_with('@'))
            .collect();
        MetaQuery::parse(&pairs, &aliases)
    }
}

/// Navigation properties of a metadata type: which exist, and how to produce them.
type Navs<'a> = &'a dyn Fn(&str, &Map<String, Value>) -> Option<Value>;

/// Navigation properties of AttributeMetadata.
fn attribute_navs(nav: &str, m: &Map<String, Value>) -> Option<Value> {
    match nav {
        "OptionSet" => Some(m.get("OptionSet").cloned().unwrap_or(Value::Null)),
        // The emulator's choices are all local option sets.
        "GlobalOptionSet" => Some(Value::Null),
        _ => None,
    }
}

fn no_navs(_: &str, _: &Map<String, Value>) -> Option<Value> {
    None
}

/// Applies a metadata query to JSON objects of type `type_name`; expanded navigation properties
/// are kept whatever `$select` says, and an unknown one is a 400 (never silently ignored).
fn apply(
    items: Vec<Map<String, Value>>,
    q: &MetaQuery,
    type_name: &str,
    navs: Navs<'_>,
    child: &dyn Fn(&str) -> (&'static str, Navs<'static>),
) -> ApiResult<Vec<Value>> {
    let probe = Map::new();
    for (nav, _) in &q.expand {
        if navs(nav, &probe).is_none() {
            return Err(meta_error(format!(
                "Could not find a property named '{nav}' on type 'Microsoft.Dynamics.CRM.{type_name}'."
            )));
        }
    }
    let ectx = mdsync_odata::EvalContext::at(chrono::Utc::now());
    let mut out = Vec::new();
    for m in items {
        if !q.filter.as_ref().is_none_or(|f| f.eval(&m, &ectx)) {
            continue;
        }
        let mut o = match &q.select {
            None => m.clone(),
            Some(cols) => m
                .iter()
                .filter(|(k, _)| {
                    k.as_str() == "MetadataId" || k.starts_with('@') || cols.contains(k)
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        for (nav, nested) in &q.expand {
            let value = navs(nav, &m).unwrap_or(Value::Null);
            let (ctype, cnavs) = child(nav);
            let value = match value {
                Value::Array(list) => {
                    let maps = list
                        .into_iter()
                        .filter_map(|v| match v {
                            Value::Object(m) => Some(m),
                            _ => None,
                        })
                        .collect();
                    Value::Array(apply(maps, nested, ctype, cnavs, &|_| ("", &no_navs))?)
                }
                Value::Object(m) => {
                    if nested.filter.is_some() {
                        return Err(meta_error(format!(
                            "The query option $filter is not allowed inside $expand of the single-valued '{nav}'."
                        )));
                    }
                    apply(vec![m], nested, ctype, cnavs, &|_| ("", &no_navs))?
                        .pop()
                        .unwrap_or(Value::Null)
                }
                other => other,
            };
            o.insert(nav.clone(), value);
        }
        out.push(Value::Object(o));
    }
    Ok(out)
}

/// Builds the navigation-property producer of EntityMetadata for one table.
fn entity_navs(def: &EntityDef) -> impl Fn(&str, &Map<String, Value>) -> Option<Value> + '_ {
    move |nav, _| match nav {
        "Attributes" => Some(Value::Array(
            def.columns
                .iter()
                .map(|c| Value::Object(attribute_json(def, c)))
                .collect(),
        )),
        "Keys" => Some(Value::Array(
            key_json(def).into_iter().map(Value::Object).collect(),
        )),
        _ => None,
    }
}

fn entity_child(nav: &str) -> (&'static str, Navs<'static>) {
    match nav {
        "Attributes" => ("AttributeMetadata", &attribute_navs),
        _ => ("EntityKeyMetadata", &no_navs),
    }
}

/// EntityKeyMetadata of a table's alternate keys.
pub fn key_json(def: &EntityDef) -> Vec<Map<String, Value>> {
    def.alternate_keys
        .iter()
        .map(|k| {
            let (name, schema) = match def.key_schema_names.iter().find(|(c, _)| c == k) {
                Some((_, schema)) => (schema.to_lowercase(), schema.clone()),
                None => (k.join("_"), format!("{}_{}", def.schema_name, k.join("_"))),
            };
            let mut m = Map::new();
            m.insert(
                "MetadataId".into(),
                json!(stable_uuid(&format!("key:{}.{name}", def.logical_name))),
            );
            m.insert("LogicalName".into(), json!(name));
            m.insert("SchemaName".into(), json!(schema));
            m.insert("EntityLogicalName".into(), json!(def.logical_name));
            m.insert("KeyAttributes".into(), json!(k));
            m.insert("DisplayName".into(), label(&k.join(", ")));
            m.insert("EntityKeyIndexStatus".into(), json!("Active"));
            m.insert("IsManaged".into(), json!(false));
            m.insert("IsCustomizable".into(), json!({"Value": true, "CanBeChanged": true, "ManagedPropertyLogicalName": "iscustomizable"}));
            m.insert("IsSynchronous".into(), json!(true));
            m.insert("IsExportKey".into(), json!(false));
            m.insert("IntroducedVersion".into(), json!("1.0"));
            m.insert("AsyncJob".into(), Value::Null);
            m
        })
        .collect()
}

/// Metadata types a cast segment may name, with the column types each one covers.
fn cast_matches(cast: &str, c: &ColumnDef) -> Option<bool> {
    let t = cast.strip_prefix("Microsoft.Dynamics.CRM.")?;
    let mt = c.ty.metadata_type();
    Some(match t {
        "AttributeMetadata" => true,
        "EnumAttributeMetadata" => matches!(
            c.ty,
            ColumnType::Picklist { .. } | ColumnType::State { .. } | ColumnType::Status { .. }
        ),
        "BooleanAttributeMetadata"
        | "StringAttributeMetadata"
        | "MemoAttributeMetadata"
        | "IntegerAttributeMetadata"
        | "BigIntAttributeMetadata"
        | "DecimalAttributeMetadata"
        | "MoneyAttributeMetadata"
        | "DoubleAttributeMetadata"
        | "DateTimeAttributeMetadata"
        | "UniqueIdentifierAttributeMetadata"
        | "PicklistAttributeMetadata"
        | "StateAttributeMetadata"
        | "StatusAttributeMetadata"
        | "LookupAttributeMetadata"
        | "MultiSelectPicklistAttributeMetadata"
        | "ImageAttributeMetadata"
        | "FileAttributeMetadata"
        | "EntityNameAttributeMetadata" => t == mt,
        _ => return None,
    })
}

fn find_entity(ctx: &Ctx<'_>, key: &Key) -> ApiResult<std::sync::Arc<EntityDef>> {
    let found = match key {
        Key::Guid(g) => ctx
            .schema
            .entities
            .iter()
            .find(|e| e.metadata_id.to_string() == *g)
            .cloned(),
        Key::Named(p) if p.len() == 1 && p[0].0 == "LogicalName" => {
            p[0].1.as_str().and_then(|n| ctx.schema.by_logical(n))
        }
        _ => None,
    };
    found.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "0x80040217",
            format!(
                "Could not find entity with the specified key: {}",
                key_text(key)
            ),
        )
    })
}

fn key_text(key: &Key) -> String {
    match key {
        Key::Guid(g) => g.clone(),
        Key::Named(p) => p
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(","),
        Key::Single(v) => v.to_string(),
        Key::Empty => String::new(),
    }
}

pub fn handle(ctx: &mut Ctx<'_>, req: &Req, segs: &[Segment]) -> ApiResult<Reply> {
    let base = ctx.base.clone();
    match (segs.len(), &segs[0].key) {
        (1, None) => {
            require_get(req)?;
            let q = MetaQuery::from_query(&req.query)?;
            let mut value = Vec::new();
            // Each table expands its own Attributes/Keys, so apply the query per table.
            for e in &ctx.schema.entities {
                let navs = entity_navs(e);
                value.extend(apply(
                    vec![entity_json(e)],
                    &q,
                    "EntityMetadata",
                    &navs,
                    &entity_child,
                )?);
            }
            Ok(Reply::json(
                StatusCode::OK,
                json!({"@odata.context": format!("{base}$metadata#EntityDefinitions"), "value": value}),
            ))
        }
        (1, Some(key)) => {
            require_get(req)?;
            let def = find_entity(ctx, key)?;
            let q = MetaQuery::from_query(&req.query)?;
            let navs = entity_navs(&def);
            let mut v = apply(
                vec![entity_json(&def)],
                &q,
                "EntityMetadata",
                &navs,
                &entity_child,
            )?;
            let mut m = match v.pop() {
                Some(Value::Object(m)) => m,
                _ => Map::new(),
            };
            m.insert(
                "@odata.context".into(),
                json!(format!("{base}$metadata#EntityDefinitions/$entity")),
            );
            Ok(Reply::json(StatusCode::OK, Value::Object(m)))
        }
        (2, Some(key))
            if segs[1].name == "Keys" && segs[1].key.is_none() && req.method == Method::POST =>
        {
            let def = find_entity(ctx, key)?;
            create_key(ctx, req, &def)
        }
        (n, Some(key)) if n >= 2 && segs[1].name == "Keys" => {
            require_get(req)?;
            let def = find_entity(ctx, key)?;
            let q = MetaQuery::from_query(&req.query)?;
            let keys = key_json(&def);
            match (&segs[1].key, n) {
                (None, 2) => {
                    let value =
                        apply(keys, &q, "EntityKeyMetadata", &no_navs, &|_| ("", &no_navs))?;
                    Ok(Reply::json(
                        StatusCode::OK,
                        json!({"@odata.context": format!("{base}$metadata#EntityDefinitions({})/Keys", def.metadata_id), "value": value}),
                    ))
                }
                (Some(kkey), 2) => {
                    let found = keys.into_iter().find(|k| match kkey {
                        Key::Guid(g) => {
                            k.get("MetadataId").and_then(Value::as_str) == Some(g.as_str())
                        }
                        Key::Named(p) if p.len() == 1 && p[0].0 == "LogicalName" => {
                            k.get("LogicalName") == Some(&p[0].1)
                        }
                        _ => false,
                    });
                    let Some(found) = found else {
                        return Err(ApiError::new(
                            StatusCode::NOT_FOUND,
                            "0x80040217",
                            format!(
                                "Could not find key with the specified key: {} on entity {}",
                                key_text(kkey),
                                def.logical_name
                            ),
                        ));
                    };
                    let mut m =
                        match apply(vec![found], &q, "EntityKeyMetadata", &no_navs, &|_| {
                            ("", &no_navs)
                        })?
                        .pop()
                        {
                            Some(Value::Object(m)) => m,
                            _ => Map::new(),
                        };
                    m.insert(
                        "@odata.context".into(),
                        json!(format!(
                            "{base}$metadata#EntityDefinitions({})/Keys/$entity",
                            def.metadata_id
                        )),
                    );
                    Ok(Reply::json(StatusCode::OK, Value::Object(m)))
                }
                _ => Err(ApiError::segment_not_found(&segs[2].name)),
            }
        }
        (n, Some(key)) if n >= 2 && segs[1].name == "Attributes" => {
            let def = find_entity(ctx, key)?;
            match (&segs[1].key, req.method.clone()) {
                (None, Method::GET) => {
                    let cast = match segs.get(2) {
                        Some(c) if n == 3 && c.key.is_none() => Some(c.name.as_str()),
                        Some(c) => return Err(ApiError::segment_not_found(&c.name)),
                        None => None,
                    };
                    if let Some(cast) = cast
                        && def
                            .columns
                            .first()
                            .and_then(|c| cast_matches(cast, c))
                            .is_none()
                    {
                        return Err(ApiError::segment_not_found(cast));
                    }
                    let q = MetaQuery::from_query(&req.query)?;
                    let items = def
                        .columns
                        .iter()
                        .filter(|c| cast.is_none_or(|t| cast_matches(t, c) == Some(true)))
                        .map(|c| attribute_json(&def, c))
                        .collect();
                    let value = apply(items, &q, "AttributeMetadata", &attribute_navs, &|_| {
                        ("OptionSetMetadata", &no_navs)
                    })?;
                    let suffix = cast.map(|c| format!("/{c}")).unwrap_or_default();
                    Ok(Reply::json(
                        StatusCode::OK,
                        json!({"@odata.context": format!("{base}$metadata#EntityDefinitions({})/Attributes{suffix}", def.metadata_id), "value": value}),
                    ))
                }
                (None, Method::POST) if n == 2 => create_attribute(ctx, req, &def),
                (Some(akey), Method::GET) => {
                    let col = match akey {
                        Key::Guid(g) => {
                            def.columns.iter().find(|c| c.metadata_id.to_string() == *g)
                        }
                        Key::Named(p) if p.len() == 1 && p[0].0 == "LogicalName" => {
                            p[0].1.as_str().and_then(|n| def.column(n))
                        }
                        _ => None,
                    }
                    .ok_or_else(|| {
                        ApiError::new(
                            StatusCode::NOT_FOUND,
                            "0x80040217",
                            format!(
                                "Could not find attribute with the specified key: {} on entity {}",
                                key_text(akey),
                                def.logical_name
                            ),
                        )
                    })?;
                    if let Some(cast) = segs.get(2) {
                        if n > 3 || cast.key.is_some() {
                            return Err(ApiError::segment_not_found(&cast.name));
                        }
                        match cast_matches(&cast.name, col) {
                            None => return Err(ApiError::segment_not_found(&cast.name)),
                            Some(false) => {
                                return Err(ApiError::new(
                                    StatusCode::BAD_REQUEST,
                                    "0x80060888",
                                    format!(
                                        "The attribute {} is not of type {}.",
                                        col.logical_name, cast.name
                                    ),
                                ));
                            }
                            Some(true) => {}
                        }
                    }
                    let q = MetaQuery::from_query(&req.query)?;
                    let mut v = apply(
                        vec![attribute_json(&def, col)],
                        &q,
                        "AttributeMetadata",
                        &attribute_navs,
                        &|_| ("OptionSetMetadata", &no_navs),
                    )?;
                    let mut m = match v.pop() {
                        Some(Value::Object(m)) => m,
                        _ => Map::new(),
                    };
                    m.insert(
                        "@odata.context".into(),
                        json!(format!(
                            "{base}$metadata#EntityDefinitions({})/Attributes/$entity",
                            def.metadata_id
                        )),
                    );
                    Ok(Reply::json(StatusCode::OK, Value::Object(m)))
                }
                _ => Err(ApiError::method_not_allowed()),
            }
        }
        _ => Err(ApiError::segment_not_found(
            segs.get(1)
                .map(|s| s.name.as_str())
                .unwrap_or("EntityDefinitions"),
        )),
    }
}

fn require_get(req: &Req) -> ApiResult<()> {
    if req.method == Method::GET {
        Ok(())
    } else {
        Err(ApiError::method_not_allowed())
    }
}

fn label_text(v: Option<&Value>) -> Option<String> {
    let v = v?;
    v.get("LocalizedLabels")
        .and_then(|l| l.get(0))
        .or_else(|| v.get("UserLocalizedLabel"))
        .and_then(|l| l.get("Label"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// `POST EntityDefinitions(...)/Keys` with an EntityKeyMetadata body (`SchemaName`,
/// `KeyAttributes`, `DisplayName`).
fn create_key(ctx: &mut Ctx<'_>, req: &Req, def: &EntityDef) -> ApiResult<Reply> {
    ctx.caller.check_admin("prvCreateEntityKey")?;
    let body = json_body(req)?;
    let schema_name = body
        .get("SchemaName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request("SchemaName is required to create an entity key."))?
        .to_string();
    let columns: Vec<String> = body
        .get("KeyAttributes")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_lowercase)
                .collect()
        })
        .unwrap_or_default();
    if columns.is_empty() || columns.len() > 16 {
        return Err(ApiError::bad_request(
            "KeyAttributes must list between 1 and 16 attributes.",
        ));
    }
    for c in &columns {
        let col = def.column(c).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "0x80040217",
                format!(
                    "Could not find attribute '{c}' on entity {}.",
                    def.logical_name
                ),
            )
        })?;
        if matches!(col.ty, ColumnType::Memo { .. } | ColumnType::Boolean)
            || col.logical_name == def.primary_key
        {
            return Err(ApiError::bad_request(format!(
                "The attribute {c} of type {} cannot be part of an entity key.",
                col.ty.attribute_type()
            )));
        }
    }
    let mut sorted = columns.clone();
    sorted.sort();
    let duplicate = def.alternate_keys.iter().any(|k| {
        let mut k = k.clone();
        k.sort();
        k == sorted
    }) || def
        .key_schema_names
        .iter()
        .any(|(_, n)| n.eq_ignore_ascii_case(&schema_name));
    if duplicate {
        return Err(ApiError::bad_request(format!(
            "An entity key with the same name or attributes ({}) already exists on entity {}.",
            columns.join(", "),
            def.logical_name
        )));
    }
    store::add_custom_key(
        ctx.shared.store(),
        ctx.conn,
        &def.logical_name,
        &schema_name,
        columns,
    )?;
    ctx.schema = ctx.shared.store().schema();
    let id = stable_uuid(&format!(
        "key:{}.{}",
        def.logical_name,
        schema_name.to_lowercase()
    ));
    Ok(Reply::no_content().header(
        "OData-EntityId",
        format!(
            "{}EntityDefinitions({})/Keys({id})",
            ctx.base, def.metadata_id
        ),
    ))
}

/// `POST EntityDefinitions(...)/Attributes` with an `XxxAttributeMetadata` body.
fn create_attribute(ctx: &mut Ctx<'_>, req: &Req, def: &EntityDef) -> ApiResult<Reply> {
    ctx.caller.check_admin("prvCreateAttribute")?;
    let body = json_body(req)?;
    let odata_type = body
        .get("@odata.type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim_start_matches('#')
        .trim_start_matches("Microsoft.Dynamics.CRM.")
        .to_string();
    let schema_name = body
        .get("SchemaName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request("SchemaName is required to create an attribute."))?
        .to_string();
    let logical = body
        .get("LogicalName")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| schema_name.to_lowercase());
    let valid_chars = logical
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_chars
        || !CUSTOM_PREFIXES.iter().any(|p| logical.starts_with(p))
        || !logical.contains('_')
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "0x80044330",
            format!(
                "The schema name {schema_name} for this attribute is not valid. It must start with a valid customization prefix (for example new_) and contain only letters, numbers and underscores."
            ),
        ));
    }
    if def.column(&logical).is_some() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "0x80044363",
            format!(
                "An attribute with the specified name {logical} already exists on entity {}.",
                def.logical_name
            ),
        ));
    }
    let max_len = body
        .get("MaxLength")
        .and_then(Value::as_u64)
        .unwrap_or(100)
        .min(4000) as u32;
    let ty = match odata_type.as_str() {
        "BooleanAttributeMetadata" => ColumnType::Boolean,
        "StringAttributeMetadata" => ColumnType::String { max_len },
        "MemoAttributeMetadata" => ColumnType::Memo {
            max_len: body
                .get("MaxLength")
                .and_then(Value::as_u64)
                .unwrap_or(2000)
                .min(1_048_576) as u32,
        },
        "IntegerAttributeMetadata" => ColumnType::Integer,
        "BigIntAttributeMetadata" => ColumnType::BigInt,
        "DecimalAttributeMetadata" => ColumnType::Decimal,
        "MoneyAttributeMetadata" => ColumnType::Money,
        "DoubleAttributeMetadata" => ColumnType::Double,
        "DateTimeAttributeMetadata" => ColumnType::DateTime,
        "PicklistAttributeMetadata" => {
            let options = body
                .get("OptionSet")
                .and_then(|o| o.get("Options"))
                .and_then(Value::as_array)
                .map(|opts| {
                    opts.iter()
                        .filter_map(|o| {
                            Some((
                                o.get("Value")?.as_i64()?,
                                label_text(o.get("Label")).unwrap_or_default(),
                            ))
                        })
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            if options.is_empty() {
                return Err(ApiError::bad_request(
                    "A Picklist attribute needs OptionSet.Options with values.",
                ));
            }
            ColumnType::Picklist { options }
        }
        "" => {
            return Err(ApiError::bad_request(
                "The '@odata.type' of the attribute metadata is required.",
            ));
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "Creating attributes of type '{other}' is not supported by the emulator."
            )));
        }
    };
    let required = body
        .get("RequiredLevel")
        .and_then(|r| r.get("Value"))
        .and_then(Value::as_str)
        == Some("SystemRequired");
    let col = ColumnDef {
        logical_name: logical.clone(),
        schema_name: schema_name.clone(),
        display_name: label_text(body.get("DisplayName")).unwrap_or_else(|| schema_name.clone()),
        ty,
        required,
        valid_for_create: true,
        valid_for_update: true,
        custom: true,
        metadata_id: stable_uuid(&format!("attr:{}.{logical}", def.logical_name)),
    };
    let id = col.metadata_id;
    store::add_custom_column(ctx.shared.store(), ctx.conn, &def.logical_name, col)?;
    ctx.schema = ctx.shared.store().schema();
    Ok(Reply::no_content().header(
        "OData-EntityId",
        format!(
            "{}EntityDefinitions({})/Attributes({id})",
            ctx.base, def.metadata_id
        ),
    ))
}
