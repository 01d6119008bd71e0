//! The PostgreSQL wire's input: the bytes a client sends, read message by message as the door
//! reads them (the first message of a connection, then the ones after login), and the SQL text
//! of a query as the door parses it. Whatever the bytes, the decoder answers a message, "more
//! bytes needed" or an error that closes the connection, and never reserves memory for a
//! length field's say-so; the parser and the guard answer without panicking.

use std::sync::OnceLock;

use bytes::BytesMut;
use imagelake_pg::pgwire::messages::{DecodeContext, PgWireFrontendMessage, ProtocolVersion};
use imagelake_sql::{datafusion::sql::parser::Statement, query::guard};

/// What one input may make the decoder hold, beyond the input itself.
const MAX_EXTRA_BYTES: usize = 1 << 20;

pub fn messages(data: &[u8]) {
    for first in [true, false] {
        let mut buffer = BytesMut::from(data);
        let mut context = DecodeContext::new(ProtocolVersion::PROTOCOL3_0);
        context.awaiting_frontend_ssl = first;
        context.awaiting_frontend_startup = first;
        let ((), peak) = crate::peak_of(|| {
            loop {
                let left = buffer.len();
                match PgWireFrontendMessage::decode(&mut buffer, &context) {
                    Ok(Some(_)) if buffer.len() < left => {
                        context.awaiting_frontend_ssl = false;
                        context.awaiting_frontend_startup = false;
                    }
                    Ok(_) | Err(_) => break,
                }
            }
        });
        assert!(
            peak <= data.len() * 4 + MAX_EXTRA_BYTES,
            "{peak} bytes held decoding {} bytes",
            data.len()
        );
    }
    if let Ok(text) = std::str::from_utf8(data) {
        query_text(text);
    }
}

/// The door's parse of a query, then the guard, which lets only reads through.
fn query_text(text: &str) {
    use imagelake_pg::PostgresCompatibilityParser;
    static PARSER: OnceLock<PostgresCompatibilityParser> = OnceLock::new();
    let parser = PARSER.get_or_init(PostgresCompatibilityParser::new);
    if let Ok(statements) = parser.parse(text) {
        for statement in statements {
            let _ = guard::parsed(Statement::Statement(Box::new(statement)));
        }
    }
}
