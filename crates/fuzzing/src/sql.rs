//! The SQL doors' input: a `POST /v1/sql` body (`{"sql", "params"}`), or bare SQL text as
//! `imagelake sql` takes it. Whatever the text, the guard answers without panicking, and what it
//! lets through is a read, also when printed and parsed again; parameters become values or a
//! clear refusal.

use imagelake_sql::query::{guard, param_values};

#[derive(serde::Deserialize)]
struct Request {
    sql: String,
    #[serde(default)]
    params: Vec<serde_json::Value>,
}

pub fn sql(data: &[u8]) {
    let request = serde_json::from_slice::<Request>(data).unwrap_or_else(|_| Request {
        sql: String::from_utf8_lossy(data).into_owned(),
        params: Vec::new(),
    });
    if let Ok(statement) = guard::statement(&request.sql) {
        let again = statement.to_string();
        if let Err(e) = guard::statement(&again) {
            assert!(
                e.code != imagelake_core::ErrorCode::ForbiddenStatement,
                "a read printed as {again:?} reads as a write: {e}"
            );
        }
    }
    if let Err(e) = param_values(&request.params) {
        assert!(e.message.starts_with("params["), "{e}");
    }
}
