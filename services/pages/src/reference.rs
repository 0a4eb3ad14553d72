//! The fleet's API reference, `/api/`: one page rendered from the merged OpenAPI
//! document (`docs/openapi.json`, made by `make openapi` from the services' own),
//! built into this binary: the operations by service, then the schemas. Plain HTML in
//! the site's layout; nothing from another origin.

use askama::Template;
use serde_json::{Map, Value};

/// The fleet's document as `make openapi` last wrote it.
pub const DOCUMENT: &str = include_str!("../../../docs/openapi.json");

#[derive(Template)]
#[template(path = "api.html")]
struct Reference {
    version: String,
    groups: Vec<Group>,
    schemas: Vec<SchemaView>,
}

struct Group {
    tag: String,
    operations: Vec<OperationView>,
}

struct OperationView {
    anchor: String,
    method: String,
    path: String,
    summary: String,
    description: String,
    security: Vec<String>,
    parameters: Vec<Field>,
    body: Vec<(String, String)>,
    responses: Vec<ResponseView>,
}

struct ResponseView {
    status: String,
    description: String,
    content: String,
}

struct Field {
    name: String,
    kind: String,
    required: bool,
    description: String,
}

struct SchemaView {
    name: String,
    description: String,
    fields: Vec<Field>,
}

fn text(value: &Value, key: &str) -> String {
    value[key].as_str().unwrap_or_default().to_owned()
}

/// A schema's type in a few words: `string`, `integer`, `array of Session`, a `$ref`'s
/// name, `string | null`.
fn kind(schema: &Value) -> String {
    if let Some(reference) = schema["$ref"].as_str() {
        return reference.rsplit('/').next().unwrap_or(reference).to_owned();
    }
    if let Some(one_of) = schema["oneOf"].as_array().or(schema["anyOf"].as_array()) {
        return one_of.iter().map(kind).collect::<Vec<_>>().join(" | ");
    }
    let types: Vec<String> = match &schema["type"] {
        Value::String(t) => vec![t.clone()],
        Value::Array(ts) => ts
            .iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect(),
        _ => vec!["any".into()],
    };
    let types: Vec<String> = types
        .into_iter()
        .map(|t| match t.as_str() {
            "array" => format!("array of {}", kind(&schema["items"])),
            _ => match schema["enum"].as_array() {
                Some(values) => {
                    let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
                    format!("one of {}", values.join(", "))
                }
                None => t,
            },
        })
        .collect();
    types.join(" | ")
}

fn fields(schema: &Value) -> Vec<Field> {
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let empty = Map::new();
    let properties = schema["properties"].as_object().unwrap_or(&empty);
    properties
        .iter()
        .map(|(name, property)| Field {
            name: name.clone(),
            kind: kind(property),
            required: required.contains(&name.as_str()),
            description: text(property, "description"),
        })
        .collect()
}

fn content_summary(content: &Value) -> Vec<(String, String)> {
    content
        .as_object()
        .map(|types| {
            types
                .iter()
                .map(|(media, body)| (media.clone(), kind(&body["schema"])))
                .collect()
        })
        .unwrap_or_default()
}

fn operation(method: &str, path: &str, op: &Value) -> OperationView {
    let security = op["security"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter_map(|r| r.as_object()?.keys().next().cloned())
                .collect()
        })
        .unwrap_or_default();
    let parameters = op["parameters"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| Field {
                    name: format!("{} ({})", text(p, "name"), text(p, "in")),
                    kind: kind(&p["schema"]),
                    required: p["required"].as_bool().unwrap_or(false),
                    description: text(p, "description"),
                })
                .collect()
        })
        .unwrap_or_default();
    let responses = op["responses"]
        .as_object()
        .map(|rs| {
            rs.iter()
                .map(|(status, r)| ResponseView {
                    status: status.clone(),
                    description: text(r, "description"),
                    content: content_summary(&r["content"])
                        .into_iter()
                        .map(|(media, kind)| format!("{media}: {kind}"))
                        .collect::<Vec<_>>()
                        .join("; "),
                })
                .collect()
        })
        .unwrap_or_default();
    OperationView {
        anchor: format!("{}-{}", method, path.replace(['/', '{', '}', '.'], "-")),
        method: method.to_ascii_uppercase(),
        path: path.to_owned(),
        summary: text(op, "summary"),
        description: text(op, "description"),
        security,
        parameters,
        body: content_summary(&op["requestBody"]["content"]),
        responses,
    }
}

/// The page, from a merged OpenAPI document.
pub fn render(document: &str) -> anyhow::Result<String> {
    let doc: Value = serde_json::from_str(document)?;
    let mut groups: Vec<Group> = Vec::new();
    let empty = Map::new();
    for (path, item) in doc["paths"].as_object().unwrap_or(&empty) {
        for (method, op) in item.as_object().unwrap_or(&empty) {
            let tag = op["tags"][0].as_str().unwrap_or("kit").to_owned();
            let view = operation(method, path, op);
            match groups.iter_mut().find(|g| g.tag == tag) {
                Some(group) => group.operations.push(view),
                None => groups.push(Group {
                    tag,
                    operations: vec![view],
                }),
            }
        }
    }
    let schemas = doc["components"]["schemas"]
        .as_object()
        .unwrap_or(&empty)
        .iter()
        .map(|(name, schema)| SchemaView {
            name: name.clone(),
            description: text(schema, "description"),
            fields: fields(schema),
        })
        .collect();
    let page = Reference {
        version: text(&doc["info"], "version"),
        groups,
        schemas,
    };
    Ok(page.render()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_of_the_fleet_is_on_the_page() {
        let page = render(DOCUMENT).unwrap();
        let doc: Value = serde_json::from_str(DOCUMENT).unwrap();
        let mut count = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                let anchor = format!(
                    "id=\"{}-{}\"",
                    method,
                    path.replace(['/', '{', '}', '.'], "-")
                );
                assert!(page.contains(&anchor), "{method} {path}");
                count += 1;
            }
        }
        assert!(count > 10, "{count} operations");
        assert!(page.contains("ErrorBody"));
        // Only the site's own script (from 'self'), which the page does not need.
        for script in page.split("<script").skip(1) {
            assert!(
                script.trim_start().starts_with("src=\"/assets/"),
                "{script}"
            );
        }
    }
}
