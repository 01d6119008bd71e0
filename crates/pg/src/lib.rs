//! The PostgreSQL-wire door: psql, JDBC, psycopg, asyncpg, SQLAlchemy and the BI tools built on
//! them (Grafana, Metabase, Superset, Looker Studio, DBeaver) query the lake in front of the
//! same query layer as `POST /v1/sql`, with the same keys, limits and per-customer filter.
//!
//! - **Who logs in** ([`auth`]): user = the key id (`admin` for the admin token), password = the
//!   key. SCRAM-SHA-256 always works; MD5 or cleartext are offered only over TLS, when
//!   `sql.pg_auth` asks for them (clients without SCRAM). The server never holds the keys: it
//!   checks SCRAM against the verifier stored when the key was issued, MD5 against its MD5
//!   hash, cleartext against the key's SHA-256.
//! - **TLS** ([`tls`]) from `sql.tls_cert` and `sql.tls_key`, loaded at start: a file that does
//!   not load stops the process, never plaintext instead. Without TLS, a client that requires
//!   it is answered `N` to its SSLRequest and gives up with its own clear message.
//! - **What runs** ([`session`]): the statement is parsed in PostgreSQL's dialect (with the
//!   rewrites of datafusion-postgres for the catalog queries clients send), and then goes
//!   through the query layer's guard, limits and customer filter, in a session that also has
//!   `pg_catalog` (datafusion-pg-catalog, built from the tables that session sees) and the
//!   functions clients call at connect ([`functions`]). `SET`, `SHOW` of settings, `BEGIN`,
//!   `COMMIT`, `ROLLBACK` and `DISCARD` are answered by the door.
//! - **Errors** carry PostgreSQL's SQLSTATE ([`errors`]).

pub mod auth;
pub mod errors;
pub mod functions;
pub mod rewrite;
pub mod session;
pub mod tls;

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context;
use imagelake_runtime::AppState;
use imagelake_sql::{SessionSetup, SharedEngine, datafusion::prelude::SessionContext};
use pgwire::{
    api::{
        ConnectionManager, PgWireServerHandlers, RandomPidSecretKeyGenerator,
        auth::StartupHandler,
        cancel::{CancelHandler, DefaultCancelHandler},
        query::{ExtendedQueryHandler, SimpleQueryHandler},
    },
    tokio::{process_socket, tokio_rustls::TlsAcceptor},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};

pub use datafusion_postgres::{datafusion_pg_catalog::sql::PostgresCompatibilityParser, pgwire};

/// What every connection of the door shares.
pub struct Door {
    pub state: AppState,
    pub engine: SharedEngine,
    /// PostgreSQL's dialect, with the rewrites for catalog queries (built once: it parses its
    /// own rules).
    pub parser: PostgresCompatibilityParser,
    /// What the door adds to each query's session: `pg_catalog` and the clients' functions,
    /// for every table and for a customer's tables.
    pub every_table: SessionSetup,
    pub customer_tables: SessionSetup,
    /// Where `SET` and `SHOW` of settings are answered; it never sees the lake.
    pub settings_context: SessionContext,
    /// Connections by process id and secret, for cancel requests.
    pub connections: Arc<ConnectionManager>,
    /// Gives each connection its process id and cancel secret.
    pub pids: RandomPidSecretKeyGenerator,
    /// The key of the made-up salts of users that do not exist (one per process), so a user
    /// name gets the same salt on every try, as a real one does.
    pub mock_salts: ring::hmac::Key,
}

impl Door {
    /// The salt a user that does not exist is given, the same on every try (PostgreSQL does
    /// the same), so salts do not tell which key ids exist.
    pub fn mock_salt(&self, user: &str) -> Vec<u8> {
        ring::hmac::sign(&self.mock_salts, user.as_bytes()).as_ref()[..16].to_vec()
    }
}

/// The door, bound and ready to serve.
pub struct PgDoor {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    door: Arc<Door>,
    slots: Arc<Semaphore>,
}

impl PgDoor {
    /// Binds `sql.pg_listen` and loads the TLS files; `None` when the door is off. Any failure
    /// stops the process at start.
    pub async fn bind(state: &AppState, engine: SharedEngine) -> anyhow::Result<Option<Self>> {
        let sql = &state.settings.sql;
        let Some(listen) = sql.pg_listen else {
            return Ok(None);
        };
        let tls = match (&sql.tls_cert, &sql.tls_key) {
            (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
            _ => None,
        };
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("the PostgreSQL wire could not listen on {listen}"))?;
        let catalog = Arc::new(functions::PgCatalog::new()?);
        let door = Door {
            state: state.clone(),
            engine,
            parser: PostgresCompatibilityParser::new(),
            every_table: catalog.setup(false),
            customer_tables: catalog.setup(true),
            settings_context: SessionContext::new(),
            connections: Arc::new(ConnectionManager::new()),
            pids: RandomPidSecretKeyGenerator::default(),
            mock_salts: ring::hmac::Key::generate(
                ring::hmac::HMAC_SHA256,
                &ring::rand::SystemRandom::new(),
            )
            .map_err(|_| anyhow::anyhow!("no random numbers for the login salts"))?,
        };
        let slots = usize::try_from(sql.pg_max_connections).unwrap_or(usize::MAX);
        Ok(Some(Self {
            listener,
            tls,
            door: Arc::new(door),
            slots: Arc::new(Semaphore::new(slots)),
        }))
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections until the future is dropped; each is served on a task of its own,
    /// and ends with its client (or with the process).
    pub async fn serve(self) {
        let addr = self.listener.local_addr().ok();
        tracing::info!(
            ?addr,
            tls = self.tls.is_some(),
            "the PostgreSQL wire is listening"
        );
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let (socket, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "the PostgreSQL wire could not accept a connection");
                    continue;
                }
            };
            while connections.try_join_next().is_some() {}
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                connections.spawn(too_many(socket));
                continue;
            };
            let handlers = Handlers::new(self.door.clone());
            let login = handlers.login.clone();
            let tls = self.tls.clone();
            connections.spawn(async move {
                tokio::select! {
                    served = process_socket(socket, tls, handlers) => {
                        if let Err(e) = served {
                            tracing::debug!(%peer, error = %e, "a PostgreSQL connection ended with an error");
                        }
                    }
                    () = login.unfinished() => {
                        tracing::debug!(%peer, "a PostgreSQL connection ended without a login");
                    }
                }
                drop(slot);
            });
        }
    }
}

/// Refuses a connection past `sql.pg_max_connections` the way PostgreSQL does: its SSL or
/// GSS request declined (`N`), its startup message read, then a FATAL `53300`, so the client
/// shows the reason rather than a failed negotiation. A client that sends nothing in 5 s is
/// dropped.
async fn too_many(mut socket: TcpStream) {
    let read = async {
        loop {
            let mut length = [0u8; 4];
            socket.read_exact(&mut length).await?;
            let length = u32::from_be_bytes(length).clamp(4, 10_240) as usize - 4;
            let mut body = vec![0u8; length];
            socket.read_exact(&mut body).await?;
            // SSLRequest and GSSENCRequest: declined, and the startup message follows.
            if matches!(body.as_slice(), [4, 210, 22, 47 | 48]) {
                socket.write_all(b"N").await?;
                continue;
            }
            return Ok::<(), std::io::Error>(());
        }
    };
    if !matches!(
        tokio::time::timeout(std::time::Duration::from_secs(5), read).await,
        Ok(Ok(()))
    ) {
        return;
    }
    let mut fields = Vec::new();
    for (tag, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "53300"),
        (
            b'M',
            "sorry, too many clients already (sql.pg_max_connections)",
        ),
    ] {
        fields.push(tag);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut message = vec![b'E'];
    message.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
    message.extend_from_slice(&fields);
    let _ = socket.write_all(&message).await;
    let _ = socket.shutdown().await;
}

/// One connection's handlers: its login (which keeps the SCRAM exchange's state) and its
/// queries.
struct Handlers {
    login: Arc<auth::Login>,
    session: Arc<session::Session>,
    cancel: Arc<DefaultCancelHandler>,
}

impl Handlers {
    fn new(door: Arc<Door>) -> Self {
        Self {
            cancel: Arc::new(DefaultCancelHandler::new(door.connections.clone())),
            login: Arc::new(auth::Login::new(door.clone())),
            session: Arc::new(session::Session::new(door)),
        }
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.session.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.session.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.login.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancel.clone()
    }
}
