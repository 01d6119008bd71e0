//! Dashboards as files (Data Studio's role): each is a TOML file of panels, every panel one SQL
//! query with a chart type, a title and a unit. The defaults ship embedded
//! (`crates/server/dashboards/`); a team versions its own in the folder `web.dashboards_dir`
//! names, read at each request, so adding one needs neither code nor a restart. The API only
//! hands the definitions out: the page runs each panel through `POST /v1/sql` with the time
//! range as `$1` and `$2`, so the query layer applies the caller's view (a customer's own rows).

use std::path::Path as FsPath;

use axum::{
    Json,
    extract::{Path, State},
};
use imagelake_runtime::AppState;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{auth::Caller, error::ApiError};

/// The dashboards in the binary, by name.
const EMBEDDED: [(&str, &str); 1] = [("overview", include_str!("../../dashboards/overview.toml"))];

/// A dashboard file.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Dashboard {
    /// The file's name without `.toml`; its page is `/dashboards/{name}`.
    #[serde(default)]
    name: String,
    title: String,
    #[serde(default)]
    description: String,
    panels: Vec<Panel>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Panel {
    title: String,
    chart: Chart,
    /// What the numbers count (`uploads`, `ms`, `bytes`, `%`).
    #[serde(default)]
    unit: String,
    /// One read-only query; `$1` and `$2` are the range's start and end (RFC 3339 text).
    sql: String,
    /// The query of the rows behind the panel, for drilling down; the panel's own when absent.
    #[serde(default)]
    drill: Option<String>,
}

/// How a panel draws its rows: the first column is the x axis (a time or a category); a second
/// text column names the series; the other columns are series of their own.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Chart {
    Line,
    Bars,
    /// The first row's numbers, large.
    Stat,
    Table,
}

/// A dashboard as listed.
#[derive(Serialize, ToSchema)]
pub struct DashboardSummary {
    name: String,
    /// Empty when the file could not be read.
    title: String,
    description: String,
    panels: usize,
    /// `embedded`, or `folder` (`web.dashboards_dir`).
    source: &'static str,
    /// Why the file could not be read, when it could not.
    error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DashboardList {
    dashboards: Vec<DashboardSummary>,
}

/// Who may see dashboards: whoever may query (an `ingest` key may not).
/// The dashboards: the embedded ones and the folder's, by name.
#[utoipa::path(get, path = "/v1/dashboards", tag = "dashboards", security(("bearer" = [])),
    responses((status = 200, body = DashboardList),
        (status = 403, body = super::ErrorBody, description = "`forbidden`: an ingest key")))]
pub async fn list(
    caller: Caller,
    State(state): State<AppState>,
) -> Result<Json<DashboardList>, ApiError> {
    caller.may_query()?;
    let dashboards = read_all(&state)
        .await?
        .into_iter()
        .map(|(name, source, read)| match read {
            Ok(d) => DashboardSummary {
                name,
                title: d.title,
                description: d.description,
                panels: d.panels.len(),
                source,
                error: None,
            },
            Err(error) => DashboardSummary {
                name,
                title: String::new(),
                description: String::new(),
                panels: 0,
                source,
                error: Some(error),
            },
        })
        .collect();
    Ok(Json(DashboardList { dashboards }))
}

/// One dashboard's panels.
#[utoipa::path(get, path = "/v1/dashboards/{name}", tag = "dashboards", security(("bearer" = [])),
    params(("name" = String, Path, description = "the file's name without .toml")),
    responses((status = 200, body = Dashboard),
        (status = 403, body = super::ErrorBody, description = "`forbidden`: an ingest key"),
        (status = 404, body = super::ErrorBody, description = "no such dashboard"),
        (status = 400, body = super::ErrorBody, description = "`invalid_request`: the file is not a dashboard; the message says why")))]
pub async fn get_one(
    caller: Caller,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Dashboard>, ApiError> {
    caller.may_query()?;
    let (_, _, read) = read_all(&state)
        .await?
        .into_iter()
        .find(|(n, _, _)| *n == name)
        .ok_or_else(|| ApiError::not_found("no such dashboard"))?;
    let dashboard = read.map_err(|e| ApiError::invalid(format!("dashboard {name}: {e}")))?;
    Ok(Json(dashboard))
}

type Found = (String, &'static str, Result<Dashboard, String>);

/// [`every`], with the folder read off the async workers.
async fn read_all(state: &AppState) -> Result<Vec<Found>, ApiError> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || every(&state))
        .await
        .map_err(|e| ApiError::internal(&e))
}

/// The embedded dashboards, parsed once.
static PARSED: std::sync::LazyLock<Vec<Found>> = std::sync::LazyLock::new(|| {
    EMBEDDED
        .iter()
        .map(|(name, text)| ((*name).to_owned(), "embedded", parse(name, text)))
        .collect()
});

/// Every dashboard, by name: the folder's replace the embedded ones of the same name.
fn every(state: &AppState) -> Vec<Found> {
    let mut found: Vec<Found> = PARSED.clone();
    if let Some(dir) = &state.settings.web.dashboards_dir {
        for (name, read) in folder(dir) {
            found.retain(|(n, _, _)| *n != name);
            found.push((name, "folder", read));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// The `*.toml` files of `dir`; one whose name is not lower-case letters, digits, `-` and `_`
/// (the name is its page's address) is listed with that error.
fn folder(dir: &FsPath) -> Vec<(String, Result<Dashboard, String>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        tracing::warn!(dir = %dir.display(), "web.dashboards_dir cannot be read");
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let file = entry.file_name().to_string_lossy().into_owned();
            let name = file.strip_suffix(".toml")?.to_owned();
            let valid = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
            if !valid {
                let why = "a dashboard file's name (its page's address) must be 1 to 64 lower-case letters, digits, - and _, then .toml";
                return Some((name, Err(why.to_owned())));
            }
            let read = std::fs::read_to_string(entry.path())
                .map_err(|e| e.to_string())
                .and_then(|text| parse(&name, &text));
            Some((name, read))
        })
        .collect()
}

fn parse(name: &str, text: &str) -> Result<Dashboard, String> {
    let mut dashboard: Dashboard = toml::from_str(text).map_err(|e| e.to_string())?;
    if dashboard.panels.is_empty() {
        return Err("a dashboard needs at least one [[panels]]".to_owned());
    }
    dashboard.name = name.to_owned();
    Ok(dashboard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_dashboards_are_dashboards() {
        for (name, text) in EMBEDDED {
            let dashboard = parse(name, text).unwrap();
            assert!(
                dashboard
                    .panels
                    .iter()
                    .all(|p| p.sql.contains("$1") || p.sql.contains("$2"))
            );
        }
    }

    #[test]
    fn a_broken_file_says_why() {
        assert!(parse("x", "title = 1").unwrap_err().contains("title"));
        assert!(parse("x", "title = \"t\"\npanels = []").is_err());
        let wrong_chart =
            "title = \"t\"\n[[panels]]\ntitle = \"p\"\nchart = \"pie\"\nsql = \"SELECT 1\"";
        assert!(parse("x", wrong_chart).unwrap_err().contains("pie"));
    }
}
