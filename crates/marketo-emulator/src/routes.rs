//! Request handling shared by every endpoint: path hygiene, size limits, `_method` overrides, parameters,
//! authentication, limits, then dispatch to the endpoint modules.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::Response;
use http::{HeaderMap, Method, StatusCode, header};
use mdsync_emulator_kit::{FaultRegistry, RequestCounters};
use serde_json::Value;
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};

use crate::envelope::{self, ApiError, ApiResult};
use crate::identity::{self, ApiUser};
use crate::params::Params;
use crate::store::Store;
use crate::{Config, activities, bulk, leads, limits::Limits, lists, objects, programs};

/// Largest accepted body (HTTP 413 above).
const MAX_BODY: usize = 1024 * 1024;
/// Longest accepted URI (HTTP 414 above).
const MAX_URI: usize = 8 * 1024;

/// Everything handlers share.
pub struct AppState {
    pub config: Config,
    pub store: Store,
    pub limits: Limits,
    pub faults: FaultRegistry,
    pub counters: RequestCounters,
    pub bulk: bulk::Runner,
}

impl AppState {
    pub fn new(config: Config, store: Store) -> Result<Arc<Self>, crate::Error> {
        let faults = FaultRegistry::new(Arc::new(|fault: &mdsync_emulator_kit::Fault| {
            let code = fault.code.clone().unwrap_or_else(|| "611".into());
            let message = fault
                .message
                .clone()
                .unwrap_or_else(|| default_message(&code).into());
            envelope::json_response(
                StatusCode::OK,
                &serde_json::json!({
                    "requestId": envelope::request_id(),
                    "success": false,
                    "errors": [{"code": code, "message": message}],
                }),
            )
        }));
        bulk::recover(&store)?;
        Ok(Arc::new(Self {
            limits: Limits::new(&config),
            bulk: bulk::Runner::new(&config),
            config,
            store,
            faults,
            counters: RequestCounters::default(),
        }))
    }
}

fn default_message(code: &str) -> &'static str {
    match code {
        "601" => "Access token invalid",
        "602" => "Access token expired",
        "604" => "Request time-out",
        "606" => "Max rate limit '100' exceeded with in '20' secs",
        "607" => "Daily quota reached",
        "608" => "API Temporarily Unavailable",
        "615" => "Concurrent access limit '10' reached",
        "1029" => "Too many jobs in queue",
        _ => "System error",
    }
}

/// The full router: test surface, REST dispatcher, kit middleware (counters outermost).
pub fn router(state: Arc<AppState>) -> Router {
    let app = Router::new()
        .merge(crate::admin::routes())
        .fallback(dispatch)
        .with_state(Arc::clone(&state))
        .merge(mdsync_emulator_kit::admin_routes(
            state.faults.clone(),
            state.counters.clone(),
        ));
    // Like the real service: gzip for bodies of 1 KB or more, never for bulk files (text/*).
    let gzip = tower_http::compression::CompressionLayer::new()
        .gzip(true)
        .quality(tower_http::CompressionLevel::Fastest)
        .compress_when(SizeAbove::new(1024).and(NotForContentType::const_new("text/")));
    app.layer(mdsync_emulator_kit::catch_panic_layer(
        envelope::panic_response,
    ))
    .layer(gzip)
    .layer(mdsync_emulator_kit::fault_layer(state.faults.clone()))
    .layer(from_fn_with_state(state, gate))
}

/// Outermost middleware: counts the request by route template and holds a concurrency slot (615) for
/// API calls, so slow calls (including injected latency) occupy the gate like real ones.
async fn gate(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let path = normalize_path(request.uri().path());
    state
        .counters
        .record(request.method().as_str(), &route_template(&path));
    let is_api = path.starts_with("/rest/") || path.starts_with("/bulk/");
    if !is_api {
        return next.run(request).await;
    }
    match state.limits.enter() {
        Ok(guard) => {
            let response = next.run(request).await;
            drop(guard);
            response
        }
        Err(err) => err.render(&envelope::request_id()),
    }
}

/// Resolves `.`/`..` segments and drops empty ones (`/rest/../bulk/v1/x` → `/bulk/v1/x`).
pub fn normalize_path(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    format!("/{}", segments.join("/"))
}

/// Counter key: ids and names in paths replaced by placeholders.
fn route_template(path: &str) -> String {
    if path.starts_with(mdsync_emulator_kit::ADMIN_PREFIX) {
        return path.to_owned();
    }
    let segments: Vec<&str> = path.split('/').collect();
    let mut out = Vec::with_capacity(segments.len());
    for (i, seg) in segments.iter().enumerate() {
        let stem = seg.strip_suffix(".json").unwrap_or(seg);
        let suffix = if seg.ends_with(".json") { ".json" } else { "" };
        let replaced = if !stem.is_empty() && stem.bytes().all(|b| b.is_ascii_digit()) {
            format!("{{id}}{suffix}")
        } else if stem.len() == 36 && stem.bytes().filter(|b| *b == b'-').count() == 4 {
            format!("{{exportId}}{suffix}")
        } else if i >= 2 && segments[i - 1] == "fields" && segments[i - 2] == "schema" {
            format!("{{fieldApiName}}{suffix}")
        } else {
            (*seg).to_owned()
        };
        out.push(replaced);
    }
    out.join("/")
}

/// One authenticated API call.
pub struct Ctx {
    pub request_id: String,
    pub user: ApiUser,
    pub params: Params,
    pub headers: HeaderMap,
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Endpoint {
    LeadsQuery,
    LeadsSync,
    LeadsDelete,
    LeadById(String),
    LeadsDescribe,
    LeadsDescribe2,
    SchemaFields,
    SchemaFieldsCreate,
    SchemaField(String),
    SchemaFieldUpdate(String),
    Partitions,
    PartitionsUpdate,
    Merge(String),
    ActivityTypes,
    PagingToken,
    Activities,
    LeadChanges,
    DeletedLeads,
    Usage(usize),
    Errors,
    ObjectQuery(objects::Kind),
    ObjectSync(objects::Kind),
    ObjectDescribe(objects::Kind),
    ObjectDelete(objects::Kind),
    BulkCreate(bulk::Kind),
    BulkList(bulk::Kind),
    BulkEnqueue(bulk::Kind, String),
    BulkStatus(bulk::Kind, String),
    BulkFile(bulk::Kind, String),
    BulkCancel(bulk::Kind, String),
    LeadsPush,
    Associate(String),
    Lists,
    ListById(String),
    ListMembers(String),
    ListAdd(String),
    ListRemove(String),
    ListIsMember(String),
    Campaigns,
    CampaignById(String),
    Programs,
    NamedAccountsDescribe,
    CustomObjects,
}

impl Endpoint {
    /// Endpoints whose input is a JSON body: a form-encoded body there is 612, not a missing `input`.
    fn wants_json(&self) -> bool {
        matches!(
            self,
            Endpoint::LeadsSync
                | Endpoint::LeadsPush
                | Endpoint::ObjectSync(_)
                | Endpoint::ObjectDelete(_)
                | Endpoint::BulkCreate(_)
                | Endpoint::SchemaFieldsCreate
        )
    }
}

fn resolve(method: &Method, path: &str) -> Result<Endpoint, ApiError> {
    use Endpoint as E;
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let get = *method == Method::GET;
    let post = *method == Method::POST;
    let only = |ok: bool, e: Endpoint| {
        if ok {
            Ok(e)
        } else {
            Err(ApiError::method_not_supported())
        }
    };
    let json_stem = |s: &str| s.strip_suffix(".json").map(str::to_owned);
    match segs.as_slice() {
        ["rest", "v1", "leads.json"] => match *method {
            Method::GET => Ok(E::LeadsQuery),
            Method::POST => Ok(E::LeadsSync),
            Method::DELETE => Ok(E::LeadsDelete),
            _ => Err(ApiError::method_not_supported()),
        },
        ["rest", "v1", "lead", id] if id.ends_with(".json") => {
            only(get, E::LeadById(json_stem(id).unwrap_or_default()))
        }
        ["rest", "v1", "leads", "delete.json"] => only(post, E::LeadsDelete),
        ["rest", "v1", "leads", "describe.json"] => only(get, E::LeadsDescribe),
        ["rest", "v1", "leads", "describe2.json"] => only(get, E::LeadsDescribe2),
        ["rest", "v1", "leads", "schema", "fields.json"] => {
            if post {
                Ok(E::SchemaFieldsCreate)
            } else {
                only(get, E::SchemaFields)
            }
        }
        ["rest", "v1", "leads", "schema", "fields", name] if name.ends_with(".json") => {
            let name = json_stem(name).unwrap_or_default();
            if post {
                Ok(E::SchemaFieldUpdate(name))
            } else {
                only(get, E::SchemaField(name))
            }
        }
        ["rest", "v1", "leads", "partitions.json"] => {
            if post {
                Ok(E::PartitionsUpdate)
            } else {
                only(get, E::Partitions)
            }
        }
        ["rest", "v1", "leads", id, "merge.json"] => only(post, E::Merge((*id).to_owned())),
        ["rest", "v1", "leads", "push.json"] => only(post, E::LeadsPush),
        ["rest", "v1", "leads", id, "associate.json"] => only(post, E::Associate((*id).to_owned())),
        ["rest", "v1", "lists.json"] => only(get, E::Lists),
        ["rest", "v1", "lists", id] if id.ends_with(".json") => {
            only(get, E::ListById(json_stem(id).unwrap_or_default()))
        }
        ["rest", "v1", "lists", id, "leads.json"] => match *method {
            Method::GET => Ok(E::ListMembers((*id).to_owned())),
            Method::POST => Ok(E::ListAdd((*id).to_owned())),
            Method::DELETE => Ok(E::ListRemove((*id).to_owned())),
            _ => Err(ApiError::method_not_supported()),
        },
        // The older singular path node-marketo-rest's `list.getLeads` still calls.
        ["rest", "v1", "list", id, "leads.json"] => only(get, E::ListMembers((*id).to_owned())),
        ["rest", "v1", "lists", id, "leads", "ismember.json"] => {
            only(get, E::ListIsMember((*id).to_owned()))
        }
        ["rest", "v1", "campaigns.json"] => only(get, E::Campaigns),
        ["rest", "v1", "campaigns", id] if id.ends_with(".json") => {
            only(get, E::CampaignById(json_stem(id).unwrap_or_default()))
        }
        ["rest", "asset", "v1", "programs.json"] => only(get, E::Programs),
        ["rest", "v1", "namedaccounts", "describe.json"] => only(get, E::NamedAccountsDescribe),
        ["rest", "v1", "customobjects.json"] => only(get, E::CustomObjects),
        ["rest", "v1", "activities", "types.json"] => only(get, E::ActivityTypes),
        ["rest", "v1", "activities", "pagingtoken.json"] => only(get, E::PagingToken),
        ["rest", "v1", "activities.json"] => only(get, E::Activities),
        ["rest", "v1", "activities", "leadchanges.json"] => only(get, E::LeadChanges),
        ["rest", "v1", "activities", "deletedleads.json"] => only(get, E::DeletedLeads),
        ["rest", "v1", "stats", "usage.json"] => only(get, E::Usage(1)),
        ["rest", "v1", "stats", "usage", "last7days.json"] => only(get, E::Usage(7)),
        ["rest", "v1", "stats", "errors.json"]
        | ["rest", "v1", "stats", "errors", "last7days.json"] => only(get, E::Errors),
        ["rest", "v1", rest @ ..] => {
            if let Some((kind, action)) = objects::Kind::from_path(rest) {
                return match action {
                    objects::Action::Root if get => Ok(E::ObjectQuery(kind)),
                    objects::Action::Root if post => Ok(E::ObjectSync(kind)),
                    objects::Action::Describe => only(get, E::ObjectDescribe(kind)),
                    objects::Action::Delete => only(post, E::ObjectDelete(kind)),
                    _ => Err(ApiError::method_not_supported()),
                };
            }
            Err(ApiError::not_found())
        }
        ["bulk", "v1", rest @ ..] => bulk::resolve(method, rest),
        _ => Err(ApiError::not_found()),
    }
}

/// The REST/bulk dispatcher (every path not under `/_emulator/`).
async fn dispatch(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let request_id = envelope::request_id();
    if request.uri().to_string().len() > MAX_URI {
        return ApiError::http(StatusCode::URI_TOO_LONG, "414 Request-URI Too Large")
            .render(&request_id);
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::http(
                StatusCode::PAYLOAD_TOO_LARGE,
                "413 Request Entity Too Large",
            )
            .render(&request_id);
        }
    };
    let path = normalize_path(parts.uri.path());
    let mut pairs = Params::parse_pairs(parts.uri.query().unwrap_or(""));
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let is_form = content_type.starts_with("application/x-www-form-urlencoded");
    let is_json = content_type.starts_with("application/json") || content_type.contains("+json");

    if path == "/identity/oauth/token" {
        if parts.method != Method::GET && parts.method != Method::POST {
            return envelope::json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &serde_json::json!({"error": "invalid_request", "error_description": "Method not supported"}),
            );
        }
        if parts.method == Method::POST && is_form {
            pairs.extend(Params::parse_pairs(&String::from_utf8_lossy(&bytes)));
        }
        let params = Params::new(pairs, None);
        let state2 = Arc::clone(&state);
        let lifetime = state.config.token_lifetime.as_secs();
        return run_blocking(move || identity::token(&state2.store, &params, lifetime)).await;
    }

    let method_override = pairs
        .iter()
        .any(|(k, v)| k == "_method" && v.eq_ignore_ascii_case("GET"));
    let mut method = parts.method.clone();
    let mut json: Option<Value> = None;
    let mut body_error: Option<ApiError> = None;
    let mut form_body = false;
    if method != Method::GET && !bytes.is_empty() {
        let starts_json = bytes
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'{' || *b == b'[');
        if is_form && starts_json {
            // JSON sent as a form: the real service answers 612, it does not read it as a form.
            body_error = Some(ApiError::invalid_content_type());
        } else if is_form {
            form_body = true;
            let form = Params::parse_pairs(&String::from_utf8_lossy(&bytes));
            pairs.extend(form);
        } else if is_json {
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(v) => json = Some(v),
                Err(_) => body_error = Some(ApiError::invalid_json()),
            }
        } else if !path.starts_with("/bulk/") || !bytes.iter().all(u8::is_ascii_whitespace) {
            body_error = Some(ApiError::invalid_content_type());
        }
    }
    let method_override = method_override
        || pairs
            .iter()
            .any(|(k, v)| k == "_method" && v.eq_ignore_ascii_case("GET"));
    if method == Method::POST && method_override {
        method = Method::GET;
    }

    let bearer = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        });
    let params = Params::new(pairs, json);
    let token = bearer.or_else(|| params.get("access_token"));
    let headers = parts.headers;
    let state2 = Arc::clone(&state);
    run_blocking(move || {
        let state = state2;
        let outcome = (|| -> ApiResult {
            let user = identity::authenticate(&state.store, token.as_deref())?;
            let endpoint = resolve(&method, &path)?;
            state.limits.count(&user.email)?;
            if let Some(err) = body_error {
                return Err(err);
            }
            if form_body && method == Method::POST && endpoint.wants_json() {
                return Err(ApiError::invalid_content_type());
            }
            let ctx = Ctx {
                request_id: request_id.clone(),
                user,
                params,
                headers,
            };
            call(&state, &ctx, endpoint)
        })();
        match outcome {
            Ok(reply) => reply.render(&request_id),
            Err(err) => err.render(&request_id),
        }
    })
    .await
}

/// Runs SQLite-bound work off the async workers; a panic resurfaces here for the panic layer.
async fn run_blocking(work: impl FnOnce() -> Response + Send + 'static) -> Response {
    match tokio::task::spawn_blocking(work).await {
        Ok(response) => response,
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(_) => envelope::panic_response(),
    }
}

fn call(state: &AppState, ctx: &Ctx, endpoint: Endpoint) -> ApiResult {
    use Endpoint as E;
    match endpoint {
        E::LeadsQuery => leads::query(state, ctx),
        E::LeadsSync => leads::sync(state, ctx),
        E::LeadsDelete => leads::delete(state, ctx),
        E::LeadById(id) => leads::get_by_id(state, ctx, &id),
        E::LeadsDescribe => leads::describe(state),
        E::LeadsDescribe2 => leads::describe2(state),
        E::SchemaFields => leads::schema_fields(state, ctx),
        E::SchemaFieldsCreate => leads::create_fields(state, ctx),
        E::SchemaField(name) => leads::schema_field(state, &name),
        E::SchemaFieldUpdate(name) => leads::update_field(state, ctx, &name),
        E::Partitions => leads::partitions(state),
        E::PartitionsUpdate => leads::update_partitions(state, ctx),
        E::Merge(id) => leads::merge(state, ctx, &id),
        E::ActivityTypes => activities::types(),
        E::PagingToken => activities::paging_token(state, ctx),
        E::Activities => activities::activities(state, ctx),
        E::LeadChanges => activities::lead_changes(state, ctx),
        E::DeletedLeads => activities::deleted_leads(state, ctx),
        E::Usage(days) => Ok(envelope::Reply::result(state.limits.usage(days))),
        E::Errors => Ok(envelope::Reply::result(Vec::new())),
        E::ObjectQuery(kind) => objects::query(state, ctx, kind),
        E::ObjectSync(kind) => objects::sync(state, ctx, kind),
        E::ObjectDescribe(kind) => objects::describe(kind),
        E::ObjectDelete(kind) => objects::delete(state, ctx, kind),
        E::BulkCreate(kind) => bulk::create(state, ctx, kind),
        E::BulkList(kind) => bulk::list(state, ctx, kind),
        E::BulkEnqueue(kind, id) => bulk::enqueue(state, ctx, kind, &id),
        E::BulkStatus(kind, id) => bulk::status(state, ctx, kind, &id),
        E::BulkFile(kind, id) => bulk::file(state, ctx, kind, &id),
        E::BulkCancel(kind, id) => bulk::cancel(state, ctx, kind, &id),
        E::LeadsPush => leads::push(state, ctx),
        E::Associate(id) => leads::associate(state, ctx, &id),
        E::Lists => lists::query(state, ctx),
        E::ListById(id) => lists::by_id(state, &id),
        E::ListMembers(id) => lists::members(state, ctx, &id),
        E::ListAdd(id) => lists::add(state, ctx, &id),
        E::ListRemove(id) => lists::remove(state, ctx, &id),
        E::ListIsMember(id) => lists::is_member_of(state, ctx, &id),
        E::Campaigns => programs::campaigns(state, ctx),
        E::CampaignById(id) => programs::campaign(state, &id),
        E::Programs => programs::programs(state, ctx),
        E::NamedAccountsDescribe => objects::describe_named_accounts(),
        // No custom object types in this instance: an empty list, not an error.
        E::CustomObjects => Ok(envelope::Reply::result(Vec::new())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A panic inside blocking handler work resurfaces on the request task, where the kit's panic layer
    /// answers the Marketo 611 envelope with HTTP 500 and the service keeps answering.
    #[tokio::test]
    async fn blocking_handler_panics_become_611_and_the_service_survives() {
        use tower::ServiceExt;
        let app = Router::new()
            .route(
                "/boom",
                axum::routing::get(|| run_blocking(|| panic!("handler bug"))),
            )
            .route(
                "/fine",
                axum::routing::get(|| {
                    run_blocking(|| envelope::plain_response(StatusCode::OK, "ok".into()))
                }),
            )
            .layer(mdsync_emulator_kit::catch_panic_layer(
                envelope::panic_response,
            ));
        let request = |path: &str| {
            http::Request::builder()
                .uri(path)
                .body(axum::body::Body::empty())
                .unwrap_or_default()
        };
        let boom = app
            .clone()
            .oneshot(request("/boom"))
            .await
            .expect("infallible");
        assert_eq!(boom.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(boom.into_body(), 4096)
            .await
            .unwrap_or_default();
        let body: Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(body["errors"][0]["code"], "611");
        assert_eq!(body["success"], false);
        let fine = app.oneshot(request("/fine")).await.expect("infallible");
        assert_eq!(fine.status(), StatusCode::OK);
    }

    #[test]
    fn paths_are_normalised_and_templated() {
        assert_eq!(
            normalize_path("/rest/../bulk/v1/leads/export/create.json"),
            "/bulk/v1/leads/export/create.json"
        );
        assert_eq!(
            normalize_path("//rest//v1/./leads.json"),
            "/rest/v1/leads.json"
        );
        assert_eq!(
            route_template("/rest/v1/lead/42.json"),
            "/rest/v1/lead/{id}.json"
        );
        assert_eq!(
            route_template("/rest/v1/leads/schema/fields/msftId.json"),
            "/rest/v1/leads/schema/fields/{fieldApiName}.json"
        );
    }
}
