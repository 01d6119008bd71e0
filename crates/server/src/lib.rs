//! The HTTP door of imagelake: the axum API (routes, extractors, the OpenAPI document), how
//! connections are served, and the start and ordered stop of each role ([`serve`]). What the
//! system does (settings, state, ingest, processing, retention, limits) is
//! `imagelake-runtime`; this crate only speaks HTTP.

pub mod api;
pub mod auth;
pub mod connections;
pub mod error;
pub mod requests;
pub mod serve;
pub mod web;

pub use serve::{Running, start};
