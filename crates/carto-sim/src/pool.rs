//! A small connection pool per (database, role). Connections are made AS the role, so permissions are
//! PostgreSQL's own. Like CARTO's node-postgres pool, session state (a plain `SET`) stays on a pooled
//! connection and leaks into later requests: that is the behaviour being reproduced.
use crate::accounts::role_password;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_postgres::error::DbError;
use tokio_postgres::{AsyncMessage, CancelToken, Client, NoTls};

pub struct PgConn {
    pub client: Client,
    pub notices: mpsc::UnboundedReceiver<DbError>,
    pub cancel: CancelToken,
}

impl PgConn {
    /// Drop notices left over from an earlier request.
    pub fn drain_notices(&mut self) -> Vec<DbError> {
        let mut v = Vec::new();
        while let Ok(n) = self.notices.try_recv() {
            v.push(n);
        }
        v
    }
}

type Key = (String, String);

pub struct Pool {
    base: tokio_postgres::Config,
    secret: String,
    idle: Mutex<HashMap<Key, Vec<PgConn>>>,
    /// At most this many connections in use per (database, role); more requests wait, like
    /// node-postgres' pool (CARTO's default size is 16).
    slots: Mutex<HashMap<Key, Arc<Semaphore>>>,
    pub max_idle: AtomicUsize,
}

pub const MAX_CONNECTIONS_PER_KEY: usize = 16;

/// A connection lent by the pool. It goes back only when `release()` is called after a clean end:
/// a connection dropped mid-query (client gone, COPY failed) is closed, never reused.
pub struct Pooled {
    conn: Option<PgConn>,
    key: Key,
    pool: Arc<Pool>,
    _slot: Option<OwnedSemaphorePermit>,
}

impl std::ops::Deref for Pooled {
    type Target = PgConn;
    fn deref(&self) -> &PgConn {
        // Invariant: `conn` is Some until release/drop consume it.
        self.conn.as_ref().unwrap_or_else(|| unreachable!("pooled connection used after release"))
    }
}
impl std::ops::DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut PgConn {
        self.conn.as_mut().unwrap_or_else(|| unreachable!("pooled connection used after release"))
    }
}

impl Pooled {
    /// Give the connection back for reuse (only call when no query is in flight).
    pub fn release(mut self) {
        if let Some(c) = self.conn.take() {
            if c.client.is_closed() {
                return;
            }
            let max = self.pool.max_idle.load(Ordering::Relaxed);
            if let Ok(mut idle) = self.pool.idle.lock() {
                let v = idle.entry(self.key.clone()).or_default();
                if v.len() < max {
                    v.push(c);
                }
            }
        }
    }
}

impl Pool {
    pub fn new(base: tokio_postgres::Config, secret: String, max_idle: usize) -> Arc<Pool> {
        Arc::new(Pool { base, secret, idle: Mutex::new(HashMap::new()), slots: Mutex::new(HashMap::new()), max_idle: AtomicUsize::new(max_idle) })
    }

    pub async fn get(self: &Arc<Self>, database: &str, role: &str) -> Result<Pooled, tokio_postgres::Error> {
        let key = (database.to_string(), role.to_string());
        let sem = match self.slots.lock() {
            Ok(mut m) => m.entry(key.clone()).or_insert_with(|| Arc::new(Semaphore::new(MAX_CONNECTIONS_PER_KEY))).clone(),
            Err(_) => Arc::new(Semaphore::new(MAX_CONNECTIONS_PER_KEY)),
        };
        // The semaphore is never closed, so this only fails in theory (then: no limit).
        let slot = sem.acquire_owned().await.ok();
        loop {
            let c = self.idle.lock().ok().and_then(|mut m| m.get_mut(&key).and_then(|v| v.pop()));
            match c {
                Some(mut c) if !c.client.is_closed() => {
                    c.drain_notices();
                    return Ok(Pooled { conn: Some(c), key, pool: self.clone(), _slot: slot });
                }
                Some(_) => continue,
                None => break,
            }
        }
        let c = connect(&self.base, database, role, &role_password(&self.secret, role)).await?;
        Ok(Pooled { conn: Some(c), key, pool: self.clone(), _slot: slot })
    }

    /// Close every idle connection (e.g. before dropping databases).
    pub fn clear(&self) {
        if let Ok(mut m) = self.idle.lock() {
            m.clear();
        }
    }
}

pub async fn connect(base: &tokio_postgres::Config, database: &str, user: &str, password: &str) -> Result<PgConn, tokio_postgres::Error> {
    let mut cfg = base.clone();
    cfg.dbname(database).user(user).password(password).application_name("carto-sim");
    let (client, mut connection) = cfg.connect(NoTls).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notice(n)) => {
                    let _ = tx.send(n);
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    let cancel = client.cancel_token();
    Ok(PgConn { client, notices: rx, cancel })
}

/// A superuser connection from the admin connection string (setup, teardown, test helpers).
pub async fn admin_connect(base: &tokio_postgres::Config, database: Option<&str>) -> Result<Client, tokio_postgres::Error> {
    let mut cfg = base.clone();
    if let Some(d) = database {
        cfg.dbname(d);
    }
    let (client, connection) = cfg.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}
