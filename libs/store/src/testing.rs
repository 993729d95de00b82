//! Throw-away databases for tests (feature `testing`).
//!
//! ```no_run
//! # async fn example() -> Result<(), grodt_store::StoreError> {
//! let db = grodt_store::testing::TestDb::postgres().await;
//! db.store().settings().put("risk", "limits", &serde_json::json!({})).await?;
//! # Ok(())
//! # }
//! ```
//!
//! Each `TestDb` is a fresh, migrated database, so tests run in parallel.
//! Postgres databases are dropped (`WITH (FORCE)`) when the guard drops;
//! SQLite files live in a temporary directory removed with it.

use sqlx::{Connection, PgConnection};

use crate::{Store, StoreOptions};

/// Environment variable naming the Postgres server tests use.
pub const DATABASE_URL_VAR: &str = "GRODT_TEST_DATABASE_URL";
/// Used when [`DATABASE_URL_VAR`] is unset.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

enum Cleanup {
    Postgres { admin_url: String, name: String },
    Sqlite { _dir: tempfile::TempDir },
}

/// A migrated store on its own database, removed on drop.
pub struct TestDb {
    // Declared before the guard: the pool goes first, then the database.
    store: Store,
    url: String,
    _guard: Cleanup,
}

impl TestDb {
    /// A new database on the server at `GRODT_TEST_DATABASE_URL` (default
    /// [`DEFAULT_DATABASE_URL`]).
    ///
    /// # Panics
    /// When the server is unreachable or refuses: tests must not skip.
    pub async fn postgres() -> TestDb {
        let admin = std::env::var(DATABASE_URL_VAR).unwrap_or_else(|_| DEFAULT_DATABASE_URL.into());
        Self::postgres_at(&admin).await
    }

    /// A new database on the server `admin_url` points at (its database is
    /// only used to create and drop the test one).
    ///
    /// # Panics
    /// When the server is unreachable or refuses.
    pub async fn postgres_at(admin_url: &str) -> TestDb {
        let name = format!("grodt_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(admin_url).await.unwrap_or_else(|e| {
            panic!("test Postgres at {DATABASE_URL_VAR}={admin_url} is unreachable: {e}")
        });
        // `name` is generated from hex digits only, so it is safe to splice.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        let _ = admin.close().await;
        let url = with_database(admin_url, &name);
        let cleanup = Cleanup::Postgres {
            admin_url: admin_url.to_owned(),
            name,
        };
        Self::open(url, cleanup).await
    }

    /// A new SQLite file in a temporary directory.
    ///
    /// # Panics
    /// When the directory or file cannot be created.
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("cannot create a temporary directory for SQLite");
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        Self::open(url, Cleanup::Sqlite { _dir: dir }).await
    }

    async fn open(url: String, cleanup: Cleanup) -> TestDb {
        let options = StoreOptions {
            max_connections: 8,
            ..StoreOptions::default()
        };
        // `cleanup` is held here, so the database is dropped even if the
        // connect or the migration panics.
        let store = Store::connect_with(&url, &options)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to test database {url}: {e}"));
        store
            .migrate()
            .await
            .unwrap_or_else(|e| panic!("cannot migrate test database {url}: {e}"));
        TestDb {
            store,
            url,
            _guard: cleanup,
        }
    }

    /// The migrated store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The URL of the test database, e.g. for a service under test.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Cleanup::Postgres { admin_url, name } = self else {
            return;
        };
        let (admin_url, name) = (admin_url.clone(), name.clone());
        // Drop cannot await, and may run inside a runtime: do the DROP on a
        // thread with its own small runtime and wait for it.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let mut admin = PgConnection::connect(&admin_url)
                    .await
                    .map_err(|e| e.to_string())?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
                .map_err(|e| format!("drop database {name}: {e}"))?;
                let _ = admin.close().await;
                Ok::<(), String>(())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: test database not dropped: {e}"),
            Err(_) => eprintln!("warning: test database drop thread panicked"),
        }
    }
}

/// `url` with its database path replaced by `name`, keeping any query.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{name}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A port for a service process a test starts and may restart on the same
/// address: free now, and outside the kernel's ephemeral range (32768-60999
/// on Linux), so no port-0 bind or outgoing connection of a parallel test can
/// take it before the service binds it (binding port 0 and releasing it, as
/// tests did, loses that race now and then). Random in 20000..32000 so that
/// tests picking at once rarely meet; checked by binding it.
///
/// # Panics
/// When no port of the range is free after 1,000 tries.
pub fn service_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    for _ in 0..1_000 {
        // RandomState is seeded randomly per instance: a random u64 without a crate.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let port = 20_000 + u16::try_from(h.finish() % 12_000).unwrap_or(0);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000..32000");
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_database() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(with_database("postgres://h", "t1"), "postgres://h/t1");
        assert_eq!(
            with_database("postgresql://u:p@h/db?sslmode=disable", "t1"),
            "postgresql://u:p@h/t1?sslmode=disable"
        );
    }
}
