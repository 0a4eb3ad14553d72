//! The OpenAPI documents against the routes really served: every service describes
//! every route it serves (the kit registers routes only from their descriptions), serves the same
//! document at `/<svc>/openapi.json`, routes every operation it describes, and the
//! fleet's merged document (`docs/openapi.json`, the site's `/api/`) is current.

use std::collections::BTreeMap;

use flotilla_testkit::{binary, workspace_root};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::*;

const DESCRIBED: [&str; 5] = ["signup", "login", "profile", "admin", "worker"];

/// `flotilla-<svc> openapi`: the document it serves.
fn printed_document(service: &str) -> Value {
    let output = std::process::Command::new(binary(&format!("flotilla-{service}")))
        .arg("openapi")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "flotilla-{service} openapi: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Each path parameter filled with a value of the right shape that names nothing.
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').unwrap() + open;
        out.push_str(match &rest[open + 1..close] {
            "action" => "disable",
            _ => "00000000-0000-4000-8000-000000000000",
        });
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

#[test]
fn every_route_is_described_served_and_in_the_fleet_document() {
    let fleet = Fleet::start(TestDb::sqlite());
    let mut operations = 0;
    let mut files = Vec::new();
    for service in DESCRIBED {
        let printed = printed_document(service);
        let served: Value = fleet
            .client()
            .get(fleet.direct_url(service, &format!("/{service}/openapi.json")))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(printed, served, "{service} serves the document it prints");
        assert_eq!(printed["openapi"], "3.1.0");

        // What a path no route serves answers, to tell it from a route's own 404.
        let unrouted = fleet
            .client()
            .get(fleet.direct_url(service, &format!("/{service}/no-such-route")))
            .send()
            .unwrap()
            .text()
            .unwrap();
        for (path, item) in printed["paths"].as_object().unwrap() {
            assert!(
                path.starts_with(&format!("/{service}")),
                "{path} in {service}"
            );
            for method in item.as_object().unwrap().keys() {
                operations += 1;
                let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
                let response = fleet
                    .client()
                    .request(method.clone(), fleet.direct_url(service, &concrete(path)))
                    .header("Accept", "application/json")
                    .send()
                    .unwrap();
                let status = response.status();
                let body = response.text().unwrap();
                assert_ne!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is not routed"
                );
                assert!(
                    !(status == StatusCode::NOT_FOUND && body == unrouted),
                    "{method} {path} is described and not served"
                );
                assert!(
                    !status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE,
                    "{method} {path}: {status}"
                );
            }
        }
        let file = fleet.dir().join(format!("{service}.json"));
        std::fs::write(&file, serde_json::to_vec(&printed).unwrap()).unwrap();
        files.push(file);
    }
    eprintln!("{operations} operations described and served");

    // The merge of these documents is the committed one.
    let output = std::process::Command::new(binary("flotilla-pages"))
        .arg("openapi")
        .args(&files)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let merged: Value = serde_json::from_slice(&output.stdout).unwrap();
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("docs/openapi.json")).unwrap(),
    )
    .unwrap();
    assert!(
        merged == committed,
        "docs/openapi.json is not current: run `make openapi` and commit it"
    );

    // Every reference resolves, and every operation says its errors' shape.
    let schemas: BTreeMap<String, Value> = merged["components"]["schemas"]
        .as_object()
        .unwrap()
        .clone()
        .into_iter()
        .collect();
    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r.clone());
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    refs(&merged, &mut found);
    for r in found {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{r}"));
        assert!(schemas.contains_key(name), "{r} does not resolve");
    }

    // The site's reference page shows the same document.
    let page = fleet.get("/api/");
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().unwrap();
    for (path, item) in merged["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            assert!(
                page.contains(&format!("{} {path}", method.to_ascii_uppercase())),
                "{method} {path} on /api/"
            );
        }
    }
    let document = fleet.get("/api/openapi.json");
    assert_eq!(document.status(), StatusCode::OK);
    assert!(
        document.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
}
