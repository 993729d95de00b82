-- The two Postgres roles of a GRODT database (docs/security.md):
--   migrate_role  owns the database and its schema; `grodt migrate` runs as it
--   app_role      what the services connect as: DML on the tables and use of
--                 the sequences, nothing else (no CREATE, DROP, ALTER, TRUNCATE)
-- Run as a superuser with psql variables db, migrate_role, app_role,
-- migrate_password, app_password (compose: deploy/postgres/init-roles.sh;
-- an external database: see docs/operations.md). The libs/store test
-- `roles` runs this same file. Part 1 runs on any database of the cluster,
-- part 2 connected to the GRODT database.
CREATE ROLE :"migrate_role" LOGIN PASSWORD :'migrate_password';
CREATE ROLE :"app_role" LOGIN PASSWORD :'app_password';
ALTER DATABASE :"db" OWNER TO :"migrate_role";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"db" TO :"app_role";
\connect :"db"
-- Only the owner creates objects in the schema.
ALTER SCHEMA public OWNER TO :"migrate_role";
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO :"app_role";
-- Tables and sequences that exist already (a database migrated before the roles).
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO :"app_role";
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO :"app_role";
-- Tables and sequences every later migration creates (as migrate_role).
ALTER DEFAULT PRIVILEGES FOR ROLE :"migrate_role" IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"app_role";
ALTER DEFAULT PRIVILEGES FOR ROLE :"migrate_role" IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO :"app_role";
