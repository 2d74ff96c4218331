//! A Confluent Schema Registry client: the few calls of its HTTP API a connector needs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::error::{ConnectorError, Result};

/// A schema registry at a base URL, with the schemas it has answered cached.
#[derive(Debug, Clone)]
pub struct SchemaRegistry {
    url: String,
    by_id: Arc<Mutex<HashMap<u32, String>>>,
}

impl SchemaRegistry {
    /// A client of the registry at `url` (such as `http://127.0.0.1:8081`).
    pub fn new(url: &str) -> Self {
        Self {
            url: url.trim_end_matches('/').to_string(),
            by_id: Arc::default(),
        }
    }

    /// The latest version of `subject`: its id and schema text.
    pub fn latest(&self, subject: &str) -> Result<(u32, String)> {
        let body = self.call("GET", &format!("/subjects/{subject}/versions/latest"), None)?;
        Ok((id_of(&body, &self.url)?, schema_of(&body, &self.url)?))
    }

    /// The schema text with the global id `id`.
    pub fn schema_by_id(&self, id: u32) -> Result<String> {
        if let Some(schema) = self
            .by_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
        {
            return Ok(schema.clone());
        }
        let body = self.call("GET", &format!("/schemas/ids/{id}"), None)?;
        let schema = schema_of(&body, &self.url)?;
        self.by_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, schema.clone());
        Ok(schema)
    }

    /// Registers `schema` (Avro) under `subject`, returning its id (an existing one when the
    /// registry already has the schema).
    pub fn register(&self, subject: &str, schema: &str) -> Result<u32> {
        let request = serde_json::json!({ "schema": schema, "schemaType": "AVRO" });
        let body = self.call(
            "POST",
            &format!("/subjects/{subject}/versions"),
            Some(request.to_string()),
        )?;
        id_of(&body, &self.url)
    }

    fn call(&self, method: &str, path: &str, body: Option<String>) -> Result<Value> {
        let url = format!("{}{path}", self.url);
        let failed =
            |e: ureq::Error| ConnectorError::storage(format!("schema registry {method} {url}"), e);
        let response = match body {
            None => ureq::get(&url)
                .header("Accept", "application/vnd.schemaregistry.v1+json")
                .config()
                .http_status_as_error(false)
                .build()
                .call()
                .map_err(failed)?,
            Some(body) => ureq::post(&url)
                .header("Content-Type", "application/vnd.schemaregistry.v1+json")
                .config()
                .http_status_as_error(false)
                .build()
                .send(body)
                .map_err(failed)?,
        };
        let status = response.status();
        let text = response.into_body().read_to_string().map_err(failed)?;
        if !status.is_success() {
            return Err(ConnectorError::Config(format!(
                "schema registry {method} {url}: HTTP {status}: {text}"
            )));
        }
        serde_json::from_str(&text).map_err(|e| {
            ConnectorError::storage(
                format!("schema registry {method} {url}: reading the answer"),
                e,
            )
        })
    }
}

fn id_of(body: &Value, url: &str) -> Result<u32> {
    body["id"]
        .as_u64()
        .and_then(|id| u32::try_from(id).ok())
        .ok_or_else(|| ConnectorError::Config(format!("schema registry {url}: no id in {body}")))
}

fn schema_of(body: &Value, url: &str) -> Result<String> {
    body["schema"].as_str().map(str::to_string).ok_or_else(|| {
        ConnectorError::Config(format!("schema registry {url}: no schema in {body}"))
    })
}
