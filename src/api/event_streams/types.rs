//! `/v1/Types` (list, filtered by `SchemaId`; fetch) and `/v1/Schemas/{Id}` with its
//! `/Versions`: the fixed catalog of `crate::event_streams::types`.

use axum::extract::OriginalUri;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::offset_envelope;
use crate::api::{BaseUrl, Path, printable};
use crate::event_streams::types::{
    EventType, SCHEMA_HOST, Schema, TYPES, TYPES_DATE_MS, event_type, schema,
};
use crate::state::AppState;
use crate::twilio::auth::Caller;
use crate::twilio::form::{parse_int, query};
use crate::twilio::{ApiError, date};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/Types", get(list))
        .route("/v1/Types/{type}", get(fetch))
        .route("/v1/Schemas/{id}", get(fetch_schema))
        .route("/v1/Schemas/{id}/Versions", get(list_versions))
        .route("/v1/Schemas/{id}/Versions/{version}", get(fetch_version))
}

pub fn render(base: &str, t: &EventType) -> Value {
    json!({
        "type": t.name,
        "schema_id": t.schema_id,
        "date_created": date::format(TYPES_DATE_MS),
        "date_updated": date::format(TYPES_DATE_MS),
        "description": t.description,
        "status": "available",
        "documentation_url": t.documentation_url,
        "url": format!("{base}/v1/Types/{}", t.name),
        "links": { "schema": format!("{base}/v1/Schemas/{}", t.schema_id) },
    })
}

fn render_schema(base: &str, s: &Schema) -> Value {
    let url = format!("{base}/v1/Schemas/{}", s.id);
    let (latest, created) = s.latest();
    json!({
        "id": s.id,
        "url": url,
        "links": { "versions": format!("{url}/Versions") },
        "latest_version_date_created": date::format(created),
        "latest_version": latest,
    })
}

fn render_version(base: &str, s: &Schema, (version, created): (i64, i64)) -> Value {
    json!({
        "id": s.id,
        "schema_version": version,
        "date_created": date::format(created),
        "url": format!("{base}/v1/Schemas/{}/Versions/{version}", s.id),
        "raw": format!("{SCHEMA_HOST}/{}/{version}", s.id),
    })
}

async fn list(
    _caller: Caller,
    BaseUrl(base): BaseUrl,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<Value>, ApiError> {
    let q = query(&uri);
    let schema_id = q.get("SchemaId");
    let items = TYPES
        .iter()
        .filter(|t| schema_id.is_none_or(|s| s == t.schema_id))
        .map(|t| render(&base, t))
        .collect();
    let filters: Vec<(&str, &str)> = schema_id.map(|s| ("SchemaId", s)).into_iter().collect();
    Ok(Json(offset_envelope(
        "types",
        &format!("{base}/v1/Types"),
        &filters,
        &q,
        items,
    )?))
}

async fn fetch(
    _caller: Caller,
    BaseUrl(base): BaseUrl,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let t = event_type(&name)
        .ok_or_else(|| ApiError::not_found(format!("/Types/{}", printable(&name))))?;
    Ok(Json(render(&base, t)))
}

fn schema_or_404(id: &str) -> Result<&'static Schema, ApiError> {
    schema(id).ok_or_else(|| ApiError::not_found(format!("/Schemas/{}", printable(id))))
}

async fn fetch_schema(
    _caller: Caller,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(render_schema(&base, schema_or_404(&id)?)))
}

async fn list_versions(
    _caller: Caller,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<Value>, ApiError> {
    let s = schema_or_404(&id)?;
    let items = s
        .versions
        .iter()
        .map(|v| render_version(&base, s, *v))
        .collect();
    Ok(Json(offset_envelope(
        "schema_versions",
        &format!("{base}/v1/Schemas/{}/Versions", s.id),
        &[],
        &query(&uri),
        items,
    )?))
}

async fn fetch_version(
    _caller: Caller,
    BaseUrl(base): BaseUrl,
    Path((id, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let s = schema_or_404(&id)?;
    let found = parse_int(&version).and_then(|n| s.versions.iter().find(|(v, _)| *v == n));
    let v = found.ok_or_else(|| {
        ApiError::not_found(format!(
            "/Schemas/{}/Versions/{}",
            s.id,
            printable(&version)
        ))
    })?;
    Ok(Json(render_version(&base, s, *v)))
}
