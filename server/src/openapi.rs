//! The error answers that the platform gives on behalf of every route, declared once for
//! the OpenAPI document instead of by hand in each `#[utoipa::path]`.
//!
//! - [`with_platform_errors`] adds, to every operation of a system's router, what the
//!   plumbing in front of its handlers can answer: the rejections of
//!   [`crate::error`]'s extractors, derived from what the operation declares (a JSON
//!   request body: 400 `invalid_json`, 413 `payload_too_large`, 415
//!   `unsupported_media_type`, 422 `invalid_body`; query parameters: 400
//!   `invalid_query`; path parameters: 400 `invalid_path`), and 503 `unavailable` (the
//!   session middleware reads the database on every request).
//! - [`SignInRequired`] is the 401 `sign_in_required` of routes for signed-in accounts,
//!   listed in a route's `responses(...)` like any response.
//!
//! Invariants: every response added carries the `ApiErrorBody` schema; a status the route
//! already declares keeps its description and schema and gains the added code (never a
//! second entry, never a lost one); the pass is idempotent. A system opts in only if its
//! handlers take `crate::error::{Json, Path, Query}` (axum's own extractors answer
//! plain-text rejections) and run behind the session middleware.

use meridian_shared::api::ApiErrorBody;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{OneOfBuilder, Schema};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, Response};
use utoipa::{PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;

/// The media type of every error body.
const JSON: &str = "application/json";

/// One error answer the platform may give: status, `code` and when.
struct PlatformError {
    status: u16,
    code: &'static str,
    when: &'static str,
}

/// Rejections of [`crate::error::Json`] (see `From<JsonRejection> for ApiError`).
const JSON_BODY_ERRORS: [PlatformError; 4] = [
    PlatformError {
        status: 400,
        code: "invalid_json",
        when: "the body is not JSON",
    },
    PlatformError {
        status: 413,
        code: "payload_too_large",
        when: "the body is larger than the server accepts",
    },
    PlatformError {
        status: 415,
        code: "unsupported_media_type",
        when: "the body is not sent as `Content-Type: application/json`",
    },
    PlatformError {
        status: 422,
        code: "invalid_body",
        when: "the JSON does not have the request's shape",
    },
];

/// The rejection of [`crate::error::Query`].
const QUERY_ERROR: PlatformError = PlatformError {
    status: 400,
    code: "invalid_query",
    when: "a query parameter is malformed",
};

/// The rejection of [`crate::error::Path`].
const PATH_ERROR: PlatformError = PlatformError {
    status: 400,
    code: "invalid_path",
    when: "a path parameter is malformed",
};

/// What every request may meet: the database (read for the session) too busy to answer.
const DATABASE_BUSY: PlatformError = PlatformError {
    status: 503,
    code: "unavailable",
    when: "the database is busy or unavailable; retry after `Retry-After` seconds",
};

/// `router` with the platform's errors declared on each of its operations (see the
/// module documentation).
pub fn with_platform_errors<S>(mut router: OpenApiRouter<S>) -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    declare_platform_errors(router.get_openapi_mut());
    router
}

/// Declares the platform's errors on every operation of `doc`.
pub fn declare_platform_errors(doc: &mut OpenApi) {
    for item in doc.paths.paths.values_mut() {
        let shared_parameters = item.parameters.clone().unwrap_or_default();
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            let takes = |place: ParameterIn| {
                operation
                    .parameters
                    .iter()
                    .flatten()
                    .chain(&shared_parameters)
                    .any(|parameter| parameter.parameter_in == place)
            };
            let mut errors = Vec::new();
            if takes(ParameterIn::Path) {
                errors.push(&PATH_ERROR);
            }
            if takes(ParameterIn::Query) {
                errors.push(&QUERY_ERROR);
            }
            let json_body = operation
                .request_body
                .as_ref()
                .is_some_and(|body| body.content.contains_key(JSON));
            if json_body {
                errors.extend(&JSON_BODY_ERRORS);
            }
            errors.push(&DATABASE_BUSY);
            for error in errors {
                declare(operation, error);
            }
        }
    }
    let components = doc.components.get_or_insert_with(Default::default);
    components
        .schemas
        .entry(ApiErrorBody::name().into_owned())
        .or_insert_with(ApiErrorBody::schema);
}

/// Adds `error` to `operation`'s responses, or its code to the response it already has for
/// that status.
fn declare(operation: &mut Operation, error: &PlatformError) {
    let line = format!("`{}`: {}", error.code, error.when);
    let responses = &mut operation.responses.responses;
    let Some(existing) = responses.get_mut(&error.status.to_string()) else {
        let mut response = Response::new(line);
        response
            .content
            .insert(JSON.to_owned(), Content::new(Some(error_body())));
        responses.insert(error.status.to_string(), RefOr::T(response));
        return;
    };
    // A reusable response (`$ref`) is left as its author wrote it.
    let RefOr::T(response) = existing else {
        return;
    };
    if !response.description.contains(&format!("`{}`", error.code)) {
        response.description = if response.description.trim().is_empty() {
            line
        } else {
            format!("{}; or {line}", response.description.trim_end_matches('.'))
        };
    }
    let content = response
        .content
        .entry(JSON.to_owned())
        .or_insert_with(|| Content::new(Some(error_body())));
    match &content.schema {
        None => content.schema = Some(error_body()),
        Some(schema) if is_error_body(schema) || mentions_error_body(schema) => {}
        Some(other) => {
            let either = OneOfBuilder::new().item(other.clone()).item(error_body());
            content.schema = Some(RefOr::T(Schema::OneOf(either.build())));
        }
    }
}

fn error_body() -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(ApiErrorBody::name()))
}

fn is_error_body(schema: &RefOr<Schema>) -> bool {
    matches!(schema, RefOr::Ref(reference) if *reference == Ref::from_schema_name(ApiErrorBody::name()))
}

/// A `oneOf` that already lists `ApiErrorBody` (from an earlier pass).
fn mentions_error_body(schema: &RefOr<Schema>) -> bool {
    matches!(schema, RefOr::T(Schema::OneOf(one_of)) if one_of.items.iter().any(is_error_body))
}

/// 401 `sign_in_required`: the route is for signed-in accounts and the session is a
/// guest's. List it in a route's `responses(...)`.
#[derive(utoipa::IntoResponses)]
#[response(
    status = 401,
    description = "`sign_in_required`: the route is for signed-in accounts and this session is a guest's"
)]
pub struct SignInRequired(pub ApiErrorBody);

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::openapi::path::{OperationBuilder, ParameterBuilder, PathItemBuilder};
    use utoipa::openapi::request_body::RequestBodyBuilder;
    use utoipa::openapi::{HttpMethod, PathsBuilder, ResponseBuilder};
    use utoipa::IntoResponses;

    fn response_with_error_body(description: &str) -> Response {
        ResponseBuilder::new()
            .description(description)
            .content(JSON, Content::new(Some(error_body())))
            .build()
    }

    /// `POST /things/{id}?dry_run` with a JSON body, declaring 200 and its own 422.
    fn document() -> OpenApi {
        let operation = OperationBuilder::new()
            .parameter(
                ParameterBuilder::new()
                    .name("id")
                    .parameter_in(ParameterIn::Path),
            )
            .parameter(
                ParameterBuilder::new()
                    .name("dry_run")
                    .parameter_in(ParameterIn::Query),
            )
            .request_body(Some(
                RequestBodyBuilder::new()
                    .content(JSON, Content::new(None::<RefOr<Schema>>))
                    .build(),
            ))
            .response("200", Response::new("done"))
            .response("422", response_with_error_body("`invalid_thing`"))
            .build();
        let mut doc = OpenApi::new(Default::default(), PathsBuilder::new());
        doc.paths.paths.insert(
            "/things/{id}".into(),
            PathItemBuilder::new()
                .operation(HttpMethod::Post, operation)
                .build(),
        );
        doc
    }

    fn responses(doc: &OpenApi) -> &std::collections::BTreeMap<String, RefOr<Response>> {
        let item = &doc.paths.paths["/things/{id}"];
        &item.post.as_ref().unwrap().responses.responses
    }

    fn description(doc: &OpenApi, status: &str) -> String {
        match &responses(doc)[status] {
            RefOr::T(response) => response.description.clone(),
            RefOr::Ref(_) => panic!("{status} is a reference"),
        }
    }

    fn schema(doc: &OpenApi, status: &str) -> RefOr<Schema> {
        match &responses(doc)[status] {
            RefOr::T(response) => response.content[JSON].schema.clone().unwrap(),
            RefOr::Ref(_) => panic!("{status} is a reference"),
        }
    }

    #[test]
    fn declares_what_the_extractors_and_the_session_answer() {
        let mut doc = document();
        declare_platform_errors(&mut doc);
        let statuses: Vec<&str> = responses(&doc).keys().map(String::as_str).collect();
        assert_eq!(statuses, ["200", "400", "413", "415", "422", "503"]);
        let bad_request = description(&doc, "400");
        for code in ["invalid_path", "invalid_query", "invalid_json"] {
            assert!(bad_request.contains(&format!("`{code}`")), "{bad_request}");
        }
        assert!(description(&doc, "415").contains("`unsupported_media_type`"));
        assert!(description(&doc, "413").contains("`payload_too_large`"));
        assert!(description(&doc, "503").contains("`unavailable`"));
        for status in ["400", "413", "415", "422", "503"] {
            assert!(is_error_body(&schema(&doc, status)), "{status}");
        }
        assert!(doc
            .components
            .as_ref()
            .unwrap()
            .schemas
            .contains_key("ApiErrorBody"));
    }

    #[test]
    fn a_declared_status_keeps_its_description_and_gains_the_code() {
        let mut doc = document();
        declare_platform_errors(&mut doc);
        assert_eq!(
            description(&doc, "422"),
            "`invalid_thing`; or `invalid_body`: the JSON does not have the request's shape"
        );
        // Success responses are not touched.
        assert_eq!(description(&doc, "200"), "done");
    }

    #[test]
    fn running_twice_changes_nothing() {
        let mut once = document();
        declare_platform_errors(&mut once);
        let mut twice = once.clone();
        declare_platform_errors(&mut twice);
        // (utoipa's types implement `Debug` only with its `debug` feature.)
        assert_eq!(once.to_json().unwrap(), twice.to_json().unwrap());
    }

    #[test]
    fn a_status_with_another_body_answers_either() {
        let mut doc = document();
        let other = RefOr::Ref(Ref::from_schema_name("OtherError"));
        if let Some(RefOr::T(response)) = doc
            .paths
            .paths
            .get_mut("/things/{id}")
            .and_then(|item| {
                item.post
                    .as_mut()
                    .map(|op| op.responses.responses.get_mut("422"))
            })
            .flatten()
        {
            response.content[JSON].schema = Some(other.clone());
        }
        declare_platform_errors(&mut doc);
        let RefOr::T(Schema::OneOf(either)) = schema(&doc, "422") else {
            panic!("422 is not a oneOf");
        };
        assert!(either.items == vec![other, error_body()]);
    }

    #[test]
    fn an_operation_without_parameters_or_body_gets_only_503() {
        let mut doc = OpenApi::new(Default::default(), PathsBuilder::new());
        doc.paths.paths.insert(
            "/plain".into(),
            PathItemBuilder::new()
                .operation(
                    HttpMethod::Get,
                    OperationBuilder::new()
                        .response("200", Response::new("ok"))
                        .build(),
                )
                .build(),
        );
        declare_platform_errors(&mut doc);
        let statuses: Vec<&String> = doc.paths.paths["/plain"]
            .get
            .as_ref()
            .unwrap()
            .responses
            .responses
            .keys()
            .collect();
        assert_eq!(statuses, ["200", "503"]);
    }

    /// Operations whose path parameters another change declares (`server/src/flags`);
    /// remove this once it has landed.
    const PATH_PARAMETERS_PENDING: [&str; 2] = ["/api/flags/", "/ofrep/"];

    /// The served document: every `{name}` of every path is a declared path parameter, and
    /// every error answer has the `ApiErrorBody` schema (OFREP answers with its own
    /// protocol's failure bodies).
    #[test]
    fn the_served_document_declares_path_parameters_and_error_bodies() {
        let doc: serde_json::Value =
            serde_json::from_str(crate::openapi_json_text()).expect("the document is JSON");
        let error_body = serde_json::json!({"$ref": "#/components/schemas/ApiErrorBody"});
        let mut problems = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("a path item") {
                let declared: Vec<&str> = operation["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["in"] == "path")
                    .filter_map(|p| p["name"].as_str())
                    .collect();
                let pending = PATH_PARAMETERS_PENDING.iter().any(|p| path.starts_with(p));
                for name in path
                    .split('{')
                    .skip(1)
                    .filter_map(|rest| rest.split_once('}'))
                {
                    if !declared.contains(&name.0) && !pending {
                        problems.push(format!(
                            "{method} {path}: path parameter {} undeclared",
                            name.0
                        ));
                    }
                }
                if path.starts_with("/ofrep/") {
                    continue;
                }
                for (status, response) in operation["responses"].as_object().expect("responses") {
                    let schema = &response["content"]["application/json"]["schema"];
                    let names_error_body = *schema == error_body
                        || schema["oneOf"]
                            .as_array()
                            .is_some_and(|s| s.contains(&error_body));
                    if status.starts_with(['4', '5']) && !names_error_body {
                        problems.push(format!("{method} {path}: {status} without ApiErrorBody"));
                    }
                }
            }
        }
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn sign_in_required_is_a_401_with_the_error_body() {
        let responses = SignInRequired::responses();
        let RefOr::T(response) = &responses["401"] else {
            panic!("401 is a reference");
        };
        assert!(response.description.contains("`sign_in_required`"));
        assert!(is_error_body(
            response.content[JSON].schema.as_ref().unwrap()
        ));
    }
}
