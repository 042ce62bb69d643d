//! OpenAPI 3 document generated from the handlers' annotations, served at `/api-docs/openapi.json`.

use utoipa::{
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi,
};

use crate::routes::{
    clients, groups, health, history, legacy_video, members, push, rankings, rooms, timers, todos,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "ppodok API", description = "뽀독뽀독 online study room: v1 contract"),
    paths(
        health::health, health::ready, health::metrics,
        members::login, members::dev_login, members::refresh, members::logout,
        members::me, members::me_in_group, members::withdraw,
        groups::joinable, groups::mine, groups::invite_preview, groups::create, groups::join_by_id,
        groups::join_by_invite, groups::edit, groups::set_color, groups::leave_group,
        todos::list, todos::add, todos::edit, todos::delete,
        clients::register, push::unregister_client, push::subscribe, push::unsubscribe,
        push::vapid_public_key,
        rooms::group_calendar, rooms::my_calendar, rooms::nearest, rooms::book, rooms::cancel,
        rooms::enter, rooms::exit, rooms::sfu_webhook, rooms::video_token,
        legacy_video::sfu_url, legacy_video::token,
        history::server_time, history::get_settings, history::patch_settings,
        history::durations, history::summary, history::heatmap,
        rankings::ranks, rankings::rankings,
        timers::start, timers::pause, timers::resume, timers::stop, timers::current,
    ),
    modifiers(&BearerAuth, &Contract),
    tags((name = "members"), (name = "groups"), (name = "todos"), (name = "push"), (name = "rooms"), (name = "ops"),
        (name = "study"), (name = "rankings"), (name = "timers"),
        (name = "video", description = "the old Node video server's endpoints, for the existing web client"))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Paths whose 2xx bodies are not in the contract envelope: the old Node video server's shapes,
/// and Prometheus text.
const BARE: [&str; 3] = ["/video/api/url", "/video/getToken", "/metrics"];
/// Paths that touch neither the database nor Redis (no 503).
const NO_DEPENDENCY: [&str; 4] = ["/health", "/metrics", "/video/api/url", "/api/v1/time"];

/// Makes the document say what the server sends, for every operation at once (handlers declare
/// only their `data` type and their own business errors):
/// - every 2xx `application/json` body becomes the envelope `{data, message, code}` with the
///   declared schema as `data` (`null` when none is declared);
/// - every error response carries the error envelope `{code, message}`;
/// - the errors the framework answers are added where they can occur: 400 (any input), 401
///   (bearer-secured), 404 (an id in the path, query or body: a group, room or todo that is not
///   there, or not mine, answers like a missing one), 413 (request bodies), 503 (database or Redis
///   unreachable); 429 and 503 document `Retry-After`.
struct Contract;

impl Modify for Contract {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        // Only the responses are rewritten (through JSON): the rest of the document, whose
        // schemas utoipa may not read back (an any-value field), is left as generated.
        let components = openapi.components.get_or_insert_with(Default::default);
        let schemas = serde_json::to_value(&components.schemas).expect("schemas serialize");
        components.schemas.insert(
            "ErrorBody".to_owned(),
            serde_json::from_value(error_body()).expect("a plain object schema"),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            let ops = [
                item.get.as_mut(),
                item.put.as_mut(),
                item.post.as_mut(),
                item.patch.as_mut(),
                item.delete.as_mut(),
            ];
            for op in ops.into_iter().flatten() {
                let mut value = serde_json::to_value(&*op).expect("an operation serializes");
                contract(path, &mut value, &schemas);
                op.responses = serde_json::from_value(value["responses"].take())
                    .expect("envelope responses are plain schemas");
            }
        }
    }
}

fn error_body() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "description": "The contract's error envelope.",
        "required": ["code", "message"],
        "properties": {
            "code": { "type": "string", "description": "`fail`, or `INVALID REFRESH TOKEN`" },
            "message": { "type": "string" }
        }
    })
}

/// Rewrites one operation's responses (`op` is the operation as JSON; `components` the schemas).
fn contract(path: &str, op: &mut serde_json::Value, components: &serde_json::Value) {
    use serde_json::{json, Value};
    let error = |description: &str| {
        json!({
            "description": description,
            "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorBody" } } }
        })
    };
    let retry_after = json!({
        "Retry-After": { "description": "seconds to wait", "required": true,
                          "schema": { "type": "string", "pattern": "^[0-9]+$" } }
    });
    // Whether a body schema (possibly a `$ref`) has an id property (`groupId`, `roomId`, …).
    let names_an_id = |schema: &Value| {
        let resolved = match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => r
                .rsplit('/')
                .next()
                .and_then(|name| components.get(name))
                .unwrap_or(&Value::Null),
            None => schema,
        };
        resolved["properties"]
            .as_object()
            .is_some_and(|p| p.keys().any(|k| k.ends_with("Id")))
    };
    let bare = BARE.contains(&path);
    let Some(op) = op.as_object_mut() else {
        return;
    };
    let secured = op
        .get("security")
        .and_then(Value::as_array)
        .is_some_and(|s| !s.is_empty());
    let params = op.get("parameters").and_then(Value::as_array);
    let body_id = op
        .get("requestBody")
        .and_then(|b| b["content"]["application/json"].get("schema"))
        .is_some_and(names_an_id);
    let names_id = body_id
        || params.is_some_and(|ps| {
            ps.iter()
                .any(|p| p["in"] == "path" || p["name"].as_str().is_some_and(|n| n.ends_with("Id")))
        });
    let has_body = op.contains_key("requestBody");
    let has_input = has_body || params.is_some_and(|ps| !ps.is_empty());
    let responses = op
        .entry("responses")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("responses is an object");
    for (status, response) in responses.iter_mut() {
        if status.starts_with('2') {
            if bare {
                continue;
            }
            let data = response
                .get("content")
                .and_then(|c| c.get("application/json"))
                .and_then(|c| c.get("schema"))
                .cloned()
                .unwrap_or_else(|| json!({ "type": "null" }));
            response["content"] = json!({ "application/json": { "schema": {
                "type": "object",
                "required": ["data", "message", "code"],
                "properties": {
                    "data": data,
                    "message": { "type": "string" },
                    "code": { "type": "string", "enum": ["success", "resource.created", "resource.deleted"] }
                }
            } } });
        } else {
            let description = response["description"].as_str().unwrap_or("").to_owned();
            *response = error(&description);
        }
    }
    let mut add = |status: &str, description: &str| {
        responses
            .entry(status.to_owned())
            .or_insert_with(|| error(description));
    };
    if has_input {
        add("400", "malformed or invalid input");
    }
    if secured {
        add("401", "no valid access token");
    }
    if names_id {
        add("404", "no such resource (or not mine)");
    }
    if has_body {
        add("413", "request body too large");
    }
    if !NO_DEPENDENCY.contains(&path) {
        add("503", "the database or Redis is unreachable");
    }
    for status in ["429", "503"] {
        if let Some(r) = responses.get_mut(status) {
            r["headers"] = retry_after.clone();
        }
    }
}
