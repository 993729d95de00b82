//! The two Postgres roles of deploy/postgres/roles.sql (the file Compose's
//! init script runs): the migration role owns the schema and migrates it;
//! the application role the services connect as can do everything the store
//! does (the conformance calls below) and no DDL.
//!
//! Against the Postgres at `GRODT_TEST_DATABASE_URL` (a superuser, trust
//! auth): a fresh database and two roles with unique names, dropped at the end.

use grodt_store::Store;
use grodt_store::testing::{DATABASE_URL_VAR, DEFAULT_DATABASE_URL};
use sqlx::{Connection, PgConnection};

const ROLES_SQL: &str = include_str!("../../../../deploy/postgres/roles.sql");

fn admin_url() -> String {
    std::env::var(DATABASE_URL_VAR).unwrap_or_else(|_| DEFAULT_DATABASE_URL.into())
}

/// `postgres://<user>@<host:port of the admin URL>/<db>` (trust auth: no password).
fn url_as(user: &str, db: &str) -> String {
    let admin = admin_url();
    let rest = admin.split_once("://").map_or(admin.as_str(), |(_, r)| r);
    let host_and_path = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let host = host_and_path
        .split(['/', '?'])
        .next()
        .unwrap_or(host_and_path);
    format!("postgres://{user}@{host}/{db}")
}

/// roles.sql's statements with its psql variables filled in, split at its
/// `\connect`: (on any database, on the GRODT database).
fn roles_sql(db: &str, migrate: &str, app: &str) -> (Vec<String>, Vec<String>) {
    let text = ROLES_SQL
        .replace(":\"db\"", &format!("\"{db}\""))
        .replace(":\"migrate_role\"", &format!("\"{migrate}\""))
        .replace(":\"app_role\"", &format!("\"{app}\""))
        // Trust authentication in the test server: no passwords.
        .replace(":'migrate_password'", "NULL")
        .replace(":'app_password'", "NULL");
    let (before, after) = text
        .split_once(&format!("\\connect \"{db}\"\n"))
        .expect("roles.sql has a \\connect :\"db\" line");
    let statements = |part: &str| -> Vec<String> {
        let body: String = part
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .map(|l| format!("{l}\n"))
            .collect();
        body.split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    (statements(before), statements(after))
}

async fn execute_all(conn: &mut PgConnection, statements: &[String]) {
    for s in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(s.clone()))
            .execute(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
}

/// A database set up as roles.sql says, migrated by the migration role.
struct RolesDb {
    db: String,
    migrate: String,
    app: String,
}

impl RolesDb {
    async fn new() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let this = Self {
            db: format!("grodt_test_roles_{id}"),
            migrate: format!("grodt_test_migrate_{id}"),
            app: format!("grodt_test_app_{id}"),
        };
        let mut admin = PgConnection::connect(&admin_url())
            .await
            .unwrap_or_else(|e| panic!("test Postgres at {} is unreachable: {e}", admin_url()));
        execute_all(&mut admin, &[format!("CREATE DATABASE \"{}\"", this.db)]).await;
        let (cluster, database) = roles_sql(&this.db, &this.migrate, &this.app);
        execute_all(&mut admin, &cluster).await;
        let _ = admin.close().await;
        let mut on_db = PgConnection::connect(&url_as("postgres", &this.db))
            .await
            .expect("connect to the new database as the superuser");
        execute_all(&mut on_db, &database).await;
        let _ = on_db.close().await;

        // `grodt migrate` as the migration role.
        let owner = Store::connect(&url_as(&this.migrate, &this.db))
            .await
            .expect("connect as the migration role");
        owner.migrate().await.expect("the migration role migrates");
        owner.close().await;
        this
    }

    async fn app_store(&self) -> Store {
        Store::connect(&url_as(&self.app, &self.db))
            .await
            .expect("connect as the application role")
    }

    async fn drop(self) {
        let mut admin = PgConnection::connect(&admin_url()).await.expect("admin");
        execute_all(
            &mut admin,
            &[
                format!("DROP DATABASE \"{}\" WITH (FORCE)", self.db),
                format!("DROP ROLE \"{}\"", self.app),
                format!("DROP ROLE \"{}\"", self.migrate),
            ],
        )
        .await;
    }
}

macro_rules! as_app_role {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let db = RolesDb::new().await;
                let store = db.app_store().await;
                crate::conformance::$name(&store).await;
                store.close().await;
                db.drop().await;
            }
        )*
    };
}

// The store's normal operations, as the application role.
as_app_role!(
    ping_and_backend,
    dedupe_first_time_only,
    process_once_commits_effect_and_mark_together,
    runs_lifecycle,
    settings_upsert,
    datasets_put_get_replace_delete,
    regimes_state_and_changes_commit_with_the_mark,
    journal_appends_once_in_order_and_rolls_back,
    journal_batches_append_in_one_commit_and_look_up_at_once,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_role_is_refused_ddl() {
    let db = RolesDb::new().await;
    let mut app = PgConnection::connect(&url_as(&db.app, &db.db))
        .await
        .expect("connect as the application role");
    let ddl = [
        "CREATE TABLE intruder (id int)",
        "DROP TABLE runs",
        "ALTER TABLE runs ADD COLUMN x int",
        "TRUNCATE runs",
        "CREATE SCHEMA intruder",
    ];
    let mut refused = Vec::new();
    for statement in ddl {
        let err = sqlx::raw_sql(statement)
            .execute(&mut app)
            .await
            .expect_err(statement);
        let message = err.to_string();
        assert!(
            message.contains("permission denied") || message.contains("must be owner"),
            "{statement}: {message}"
        );
        refused.push(statement);
    }
    // ... and so is migrating: `grodt migrate` needs the migration role.
    let _ = app.close().await;
    let store = db.app_store().await;
    let err = store
        .migrate()
        .await
        .expect_err("the app role cannot migrate");
    assert!(err.to_string().contains("permission denied"), "{err}");
    store.close().await;
    assert_eq!(refused.len(), ddl.len());
    db.drop().await;
}
