//! Each service's routes and their OpenAPI 3.1 description, from one list.
//!
//! A handler carries its contract in a `#[utoipa::path(…)]` attribute: its method,
//! its public path (`/signup/verify`), its parameters, its body types and every answer
//! it gives. A service lists its handlers once, in `fn api() -> Api`, and that list is
//! both what the kit registers with actix-web (under the service's `/<name>` scope, at
//! the method and path the attribute names) and what `/<name>/openapi.json` serves. A
//! service's own setup can add app data and nothing else ([`AppData`]), so a route
//! cannot exist without its description, nor a description without its route.
//!
//! Around each operation the kit adds the answers it gives itself, whatever the route:
//! `503` (database unreachable or locked, overloaded) with `Retry-After`; for a route
//! that takes a body, `400`, `413`, `415` and `422`; for a path with parameters, `404`;
//! for parameters in the address, nginx's `414`.
//! Every error has one shape ([`ErrorBody`]) in JSON, or is a page for a browser
//! (chosen by `Accept`).

use std::sync::Arc;

use actix_web::http::Method;
use actix_web::{FromRequest, Handler, Responder, Route, web};
use serde::Serialize;
use utoipa::openapi::path::{HttpMethod, Operation, Parameter, ParameterIn};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{SchemaType, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, HeaderBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Paths,
    RefOr, Schema,
};
use utoipa::{PartialSchema, ToSchema};

/// Every error a flotilla service answers to an API client (a browser gets a page).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable snake_case code to match on (`invalid_input`, `database_unavailable`, …).
    pub error: String,
    /// What went wrong, for a person.
    pub message: String,
    /// For `invalid_input` and some conflicts: each field that is wrong, and how.
    #[schema(required = false)]
    pub fields: Option<std::collections::BTreeMap<String, String>>,
}

/// The security scheme of a bearer access token (`Authorization: Bearer …`).
pub const BEARER: &str = "bearer";
/// The security scheme of the access cookie a browser carries (writes with it also
/// need the CSRF token: the `x-csrf-token` header or a `csrf_token` field).
pub const COOKIE: &str = "cookie";

type RouteFactory = Arc<dyn Fn() -> Route + Send + Sync>;

struct Entry {
    /// Under the service's scope: `/verify` for `/signup/verify`, `` for `/signup`.
    path: String,
    method: Method,
    route: RouteFactory,
}

/// A service's routes with their descriptions. Cheap to build: no state, no I/O, and
/// the descriptions are only made when the document is asked for ([`Description`]).
pub struct Api {
    service: &'static str,
    entries: Vec<Entry>,
    description: Description,
}

/// How to describe a service's routes: one function per handler, called only when the
/// document is asked for. Building the operations runs a great deal of generated code
/// and allocates the whole tree; done at start-up, it kept 4 to 8 MB more resident in
/// every service (the code's pages and the allocator's) for a document that a running
/// fleet is rarely asked for.
pub struct Description {
    service: &'static str,
    handlers: Vec<(String, Describe)>,
}

/// Adds one handler's operation(s) at the public path, and its schemas.
type Describe = fn(&str, &mut Paths, &mut Vec<(String, RefOr<Schema>)>, &'static str);

impl Api {
    pub fn new(service: &'static str) -> Self {
        Self {
            service,
            entries: Vec::new(),
            description: Description {
                service,
                handlers: Vec::new(),
            },
        }
    }

    /// Serves `handler` at the method(s) and path of its `#[utoipa::path]` attribute
    /// (`P` is the struct the attribute makes: `handlers::__path_create`).
    ///
    /// # Panics
    /// At start-up, when the path is not under the service's own prefix.
    pub fn route<P, F, Args>(self, handler: F) -> Self
    where
        P: utoipa::Path + utoipa::__dev::SchemaReferences + utoipa::__dev::Tags<'static>,
        F: Handler<Args> + Send + Sync,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        let path = P::path();
        let prefix = format!("/{}", self.service);
        let relative = match path.strip_prefix(&prefix) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => rest.to_owned(),
            _ => panic!("{path} is not under {prefix}"),
        };
        self.add::<P, F, Args>(path, relative, handler)
    }

    /// The kit's own routes, whose attributes name the path under any service's
    /// scope (`/health`).
    pub(crate) fn kit_route<P, F, Args>(self, handler: F) -> Self
    where
        P: utoipa::Path + utoipa::__dev::SchemaReferences + utoipa::__dev::Tags<'static>,
        F: Handler<Args> + Send + Sync,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        let relative = P::path();
        let path = format!("/{}{relative}", self.service);
        self.add::<P, F, Args>(path, relative, handler)
    }

    fn add<P, F, Args>(mut self, path: String, relative: String, handler: F) -> Self
    where
        P: utoipa::Path + utoipa::__dev::SchemaReferences + utoipa::__dev::Tags<'static>,
        F: Handler<Args> + Send + Sync,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        for method in P::methods() {
            let handler = handler.clone();
            self.entries.push(Entry {
                path: relative.clone(),
                method: actix_method(&method),
                route: Arc::new(move || web::route().to(handler.clone())),
            });
        }
        self.description.handlers.push((path, describe::<P>));
        self
    }

    /// Registers the routes on a service's scope: one resource per path (so that a
    /// path served for some methods answers `405` for the others).
    pub(crate) fn configure(&self, cfg: &mut web::ServiceConfig) {
        let mut paths: Vec<&str> = Vec::new();
        for entry in &self.entries {
            if !paths.contains(&entry.path.as_str()) {
                paths.push(&entry.path);
            }
        }
        for path in paths {
            let mut resource = web::resource(path);
            for entry in self.entries.iter().filter(|e| e.path == path) {
                resource = resource.route((entry.route)().method(entry.method.clone()));
            }
            cfg.service(resource);
        }
    }

    /// The `(method, public path)` of every route, in the order listed.
    pub fn operations(&self) -> Vec<(Method, String)> {
        self.entries
            .iter()
            .map(|e| (e.method.clone(), format!("/{}{}", self.service, e.path)))
            .collect()
    }

    /// The service's OpenAPI 3.1 document.
    pub fn document(&self) -> OpenApi {
        self.description.document()
    }
}

/// The operation(s) of the handler whose attribute made `P`, at `path`.
fn describe<P>(
    path: &str,
    paths: &mut Paths,
    schemas: &mut Vec<(String, RefOr<Schema>)>,
    service: &'static str,
) where
    P: utoipa::Path + utoipa::__dev::SchemaReferences + utoipa::__dev::Tags<'static>,
{
    let mut operation = P::operation();
    // The attribute's `tag` is kept apart from the operation (utoipa collects it in
    // its own derive): here it goes on the operation. No tag: the service's name.
    let tags = P::tags();
    operation.tags = Some(match tags.is_empty() {
        true => vec![service.to_owned()],
        false => tags.iter().map(|t| t.to_string()).collect(),
    });
    // Unique across the fleet's merged document: `signup_form`, `login_form`.
    operation.operation_id = operation.operation_id.map(|id| format!("{service}_{id}"));
    add_kit_answers(&mut operation, path.contains('{'));
    body_may_be_left_out(&mut operation);
    for method in P::methods() {
        paths.add_path_operation(path, vec![method], operation.clone());
    }
    P::schemas(schemas);
}

impl Description {
    /// The service's OpenAPI 3.1 document.
    pub fn document(&self) -> OpenApi {
        let mut paths = Paths::new();
        let mut schemas = Vec::new();
        for (path, describe) in &self.handlers {
            describe(path, &mut paths, &mut schemas, self.service);
        }
        schemas.push(("ErrorBody".into(), ErrorBody::schema()));
        let components = ComponentsBuilder::new()
            .schemas_from_iter(schemas)
            .security_scheme(
                BEARER,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .description(Some(
                            "An access token from `POST /login` (EdDSA JWT, 15 minutes).",
                        ))
                        .build(),
                ),
            )
            .security_scheme(
                COOKIE,
                SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                    "flotilla_access",
                    "The access cookie a browser gets at sign-in (`__Host-flotilla_access` \
                     over https). A change made with it also needs the CSRF token, in the \
                     `x-csrf-token` header or the form's `csrf_token` field.",
                ))),
            )
            .build();
        OpenApiBuilder::new()
            .info(
                InfoBuilder::new()
                    .title(format!("flotilla-{}", self.service))
                    .version(env!("CARGO_PKG_VERSION"))
                    .description(Some(
                        "Errors have one shape (`ErrorBody`) for API clients; browsers \
                         (`Accept: text/html`) get pages. `503` always comes with \
                         `Retry-After`.",
                    ))
                    .build(),
            )
            .paths(paths)
            .components(Some(components))
            .build()
    }
}

fn actix_method(method: &HttpMethod) -> Method {
    match method {
        HttpMethod::Get => Method::GET,
        HttpMethod::Post => Method::POST,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Delete => Method::DELETE,
        HttpMethod::Options => Method::OPTIONS,
        HttpMethod::Head => Method::HEAD,
        HttpMethod::Patch => Method::PATCH,
        HttpMethod::Trace => Method::TRACE,
    }
}

/// An error answer: [`ErrorBody`] in JSON, or a page.
pub fn error_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                    "ErrorBody",
                ))))
                .build(),
        )
        .content(
            "text/html",
            ContentBuilder::new().schema(Some(String::schema())).build(),
        )
        .build()
}

/// An error answer with `Retry-After`.
fn retry_response(description: &str) -> Response {
    let mut response = error_response(description);
    response.headers.insert("Retry-After".into(), retry_after());
    response
}

fn retry_after() -> RefOr<utoipa::openapi::Header> {
    RefOr::T(
        HeaderBuilder::new()
            .schema(Some(u32::schema()))
            .description(Some("Seconds to wait before trying again."))
            .build(),
    )
}

/// The answers the kit gives on any route, added where the route does not say them;
/// and on the route's own errors, the page a browser gets and the `Retry-After` of a
/// `429` or `503`.
fn add_kit_answers(operation: &mut Operation, has_parameters: bool) {
    for (status, response) in operation.responses.responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        if status.starts_with('4') || status.starts_with('5') {
            response
                .content
                .entry("text/html".into())
                .or_insert_with(|| {
                    RefOr::T(ContentBuilder::new().schema(Some(String::schema())).build())
                });
        }
        if status == "429" || status == "503" {
            response
                .headers
                .entry("Retry-After".into())
                .or_insert_with(retry_after);
        }
    }
    let mut add = |status: &str, response: Response| {
        operation
            .responses
            .responses
            .entry(status.into())
            .or_insert(RefOr::T(response));
    };
    add(
        "503",
        retry_response(
            "The database is unreachable or locked by another process, or the service \
             is overloaded; try again after `Retry-After` seconds.",
        ),
    );
    if operation.request_body.is_some() {
        add("400", error_response("The body does not parse."));
        add(
            "413",
            error_response("The body is larger than the limit (64 KiB by default)."),
        );
        add(
            "415",
            error_response("The body is not in a content type the route takes."),
        );
        add(
            "422",
            error_response("A field is invalid or not one the route takes; each is named."),
        );
    }
    if has_parameters {
        add("404", error_response("Nothing has that identifier."));
    }
    let in_url = |p: &RefOr<Parameter>| matches!(p, RefOr::T(p) if matches!(p.parameter_in, ParameterIn::Query | ParameterIn::Path));
    if operation.parameters.iter().flatten().any(in_url) {
        add(
            "414",
            ResponseBuilder::new()
                .description(
                    "The address is longer than nginx takes (a request line over 8 KiB): \
                     nginx's page.",
                )
                .content(
                    "text/html",
                    ContentBuilder::new().schema(Some(String::schema())).build(),
                )
                .build(),
        );
    }
}

/// A body declared `Option<T>` (`request_body(content((Option<T> = "…")))`) is `T` or
/// no body at all, never JSON `null`, which no extractor reads as "nothing": utoipa
/// writes `oneOf: [T, null]` and leaves the body not required; the document keeps the
/// second and says `T`.
fn body_may_be_left_out(operation: &mut Operation) {
    let Some(RefOr::T(body)) = operation.request_body.as_mut() else {
        return;
    };
    for content in body.content.values_mut() {
        let RefOr::T(content) = content else {
            continue;
        };
        let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema else {
            continue;
        };
        let mut others = one_of.items.iter().filter(|item| !is_null(item));
        if let (Some(body), None) = (others.next(), others.next())
            && one_of.items.len() == 2
        {
            content.schema = Some(body.clone());
        }
    }
}

fn is_null(schema: &RefOr<Schema>) -> bool {
    matches!(schema, RefOr::T(Schema::Object(object))
        if object.schema_type == SchemaType::Type(Type::Null))
}

/// Lets a service's own setup add app data and nothing else: routes are [`Api`]'s.
pub struct AppData<'a>(&'a mut web::ServiceConfig);

impl<'a> AppData<'a> {
    pub(crate) fn new(cfg: &'a mut web::ServiceConfig) -> Self {
        Self(cfg)
    }

    pub fn app_data<U: 'static>(&mut self, data: U) -> &mut Self {
        self.0.app_data(data);
        self
    }
}

/// The fleet's one document: every service's paths, schemas and tags together. A
/// schema name two services define differently is an error (rename one with
/// `#[schema(as = …)]`), as is a path two services both claim.
pub fn merge(documents: Vec<OpenApi>) -> Result<OpenApi, String> {
    let mut fleet = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("flotilla")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Every HTTP service of the fleet, as nginx serves them under one \
                     origin. Each service serves its own part at `/<service>/openapi.json`.",
                ))
                .build(),
        )
        .build();
    let mut schemas: std::collections::BTreeMap<String, (String, RefOr<Schema>)> =
        Default::default();
    for document in documents {
        let from = document.info.title.clone();
        if let Some(components) = &document.components {
            for (name, schema) in &components.schemas {
                match schemas.get(name) {
                    Some((other, known)) if known != schema => {
                        return Err(format!(
                            "the schema {name} differs between {other} and {from}"
                        ));
                    }
                    _ => {
                        schemas.insert(name.clone(), (from.clone(), schema.clone()));
                    }
                }
            }
        }
        for path in document.paths.paths.keys() {
            if fleet.paths.paths.contains_key(path) {
                return Err(format!("{path} is claimed twice ({from})"));
            }
        }
        fleet.merge(document);
    }
    Ok(fleet)
}

impl Api {
    /// What is wrong with the document, if anything: a route served without its
    /// operation or twice, an operation id used twice, an operation without a summary
    /// (its handler's doc comment), a security scheme the document does not define, a
    /// `$ref` to no schema.
    /// Each service's tests require none.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let document = match serde_json::to_value(self.document()) {
            Ok(document) => document,
            Err(e) => return vec![format!("the document does not serialise: {e}")],
        };
        let empty = serde_json::Map::new();
        let paths = document["paths"].as_object().unwrap_or(&empty);
        let mut described = std::collections::BTreeSet::new();
        let mut ids = std::collections::BTreeSet::new();
        for (path, item) in paths {
            for (method, operation) in item.as_object().unwrap_or(&empty) {
                let at = format!("{} {path}", method.to_ascii_uppercase());
                let id = operation["operationId"].as_str().unwrap_or_default();
                if !ids.insert(id.to_owned()) {
                    problems.push(format!("{at}: operation id {id:?} is used twice"));
                }
                if operation["summary"].as_str().is_none_or(str::is_empty) {
                    problems.push(format!("{at}: no summary (the handler's doc comment)"));
                }
                for requirement in operation["security"].as_array().into_iter().flatten() {
                    for scheme in requirement.as_object().unwrap_or(&empty).keys() {
                        if ![BEARER, COOKIE].contains(&scheme.as_str()) {
                            problems.push(format!("{at}: unknown security scheme {scheme}"));
                        }
                    }
                }
                described.insert(at);
            }
        }
        let mut served = std::collections::BTreeSet::new();
        for (method, path) in self.operations() {
            let at = format!("{method} {path}");
            if !described.contains(&at) {
                problems.push(format!("{at}: served without its operation"));
            }
            if !served.insert(at.clone()) {
                problems.push(format!("{at}: served twice"));
            }
        }
        let schemas = document["components"]["schemas"]
            .as_object()
            .unwrap_or(&empty);
        let mut references = Vec::new();
        collect_refs(&document, &mut references);
        for reference in references {
            let resolves = reference
                .strip_prefix("#/components/schemas/")
                .is_some_and(|name| schemas.contains_key(name));
            if !resolves {
                problems.push(format!("{reference} resolves to no schema"));
            }
        }
        problems
    }
}

/// Every `$ref` in `value`.
fn collect_refs(value: &serde_json::Value, found: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("$ref", serde_json::Value::String(target)) => found.push(target.clone()),
                    _ => collect_refs(inner, found),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| collect_refs(item, found)),
        _ => {}
    }
}
