//! Storage: sqlx repositories over Postgres (distributed) and SQLite (embedded) behind one interface, with migrations and a per-test database helper.
