//! The app's own data: who holds a seat in each customer's account, in a real SQLite database
//! (`QUICKSTART_DB`, a file several quickstarts may share; in memory by default), counted by the
//! `seats` limit callback.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{params, Connection};

pub(crate) struct Seats(Mutex<Connection>);

impl Seats {
    /// The database at `path` (made when missing), or one in memory.
    pub(crate) fn open(path: Option<&str>) -> rusqlite::Result<Self> {
        let connection = match path {
            Some(path) => {
                let connection = Connection::open(path)?;
                // Several processes write it: they wait for each other's transactions.
                connection.busy_timeout(Duration::from_secs(5))?;
                connection.pragma_update(None, "journal_mode", "WAL")?;
                connection
            }
            None => Connection::open_in_memory()?,
        };
        connection.execute_batch(
            "CREATE TABLE IF NOT EXISTS seats (
                customer TEXT NOT NULL,
                member TEXT NOT NULL,
                UNIQUE (customer, member)
            )",
        )?;
        Ok(Self(Mutex::new(connection)))
    }

    fn connection(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Seats the customer has.
    pub(crate) fn count(&self, customer: &str) -> rusqlite::Result<u64> {
        // Cached: the limit callback runs at every check of the feature.
        let connection = self.connection();
        let seats = connection
            .prepare_cached("SELECT COUNT(*) FROM seats WHERE customer = ?1")?
            .query_row(params![customer], |row| row.get(0));
        seats
    }

    /// Gives `member` a seat (once: a member already seated keeps one), and answers the
    /// customer's seats.
    pub(crate) fn add(&self, customer: &str, member: &str) -> rusqlite::Result<u64> {
        let connection = self.connection();
        connection.execute(
            "INSERT OR IGNORE INTO seats (customer, member) VALUES (?1, ?2)",
            params![customer, member],
        )?;
        let seats = connection
            .prepare_cached("SELECT COUNT(*) FROM seats WHERE customer = ?1")?
            .query_row(params![customer], |row| row.get(0));
        seats
    }
}
