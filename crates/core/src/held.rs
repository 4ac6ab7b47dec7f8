//! A connection a service loop keeps from one round to the next (a worker lane's claims,
//! its completer's writes), instead of taking one from the pool for each statement.
//!
//! sqlx checks every connection given back to the pool with a round trip of its own (a
//! `Sync`, on a task of its own): one more wake-up of the server and of this process per
//! statement, on the two cores that run the pipeline, and a connection that sits idle
//! until then. A loop runs one statement at a time, so it may as well keep one connection:
//! it is checked only when it sat idle for [`TRUSTED_IDLE`] or more (as the pool checks
//! them), and after an error it goes back to the pool, which closes it if it is broken,
//! and the next round takes another.

use std::time::Instant;

use sqlx::pool::PoolConnection;
use sqlx::{Connection as _, PgConnection, PgPool, Postgres};

use crate::db::TRUSTED_IDLE;

pub struct Held {
    pool: PgPool,
    conn: Option<(PoolConnection<Postgres>, Instant)>,
}

impl Held {
    /// Takes a connection of `pool` at the first [`Held::get`].
    pub fn new(pool: PgPool) -> Held {
        Held { pool, conn: None }
    }

    /// The connection: the one kept (checked first if it sat idle), else a new one from
    /// the pool. Call [`Held::reset`] after an error on it.
    pub async fn get(&mut self) -> Result<&mut PgConnection, sqlx::Error> {
        if let Some((conn, used)) = &mut self.conn {
            if used.elapsed() >= TRUSTED_IDLE && conn.ping().await.is_err() {
                self.conn = None;
            }
        }
        if self.conn.is_none() {
            self.conn = Some((self.pool.acquire().await?, Instant::now()));
        }
        let (conn, used) = self.conn.as_mut().expect("a connection was just taken");
        *used = Instant::now();
        Ok(&mut **conn)
    }

    /// Gives the connection back to the pool (which closes it if it is broken): the next
    /// [`Held::get`] takes another.
    pub fn reset(&mut self) {
        self.conn = None;
    }
}
