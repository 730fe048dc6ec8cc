-- onwatch on PostgreSQL: two roles (docs/security.md, "Database roles").
-- Run once as a superuser (psql -v ON_ERROR_STOP=1 -f roles.sql), then, also as the superuser:
--   CREATE DATABASE onwatch OWNER onwatch_owner;
-- and give each role its password: ALTER ROLE onwatch_owner PASSWORD '…'; ALTER ROLE onwatch_app PASSWORD '…';
--
-- onwatch_owner owns the schema: `onwatch migrate` runs as it (a one-off Job), never the server.
-- onwatch_app is what `onwatch serve` connects as: it reads and writes onwatch's tables, but on audit_event
-- it may only SELECT and INSERT. It does not own the table, so it cannot UPDATE, DELETE or TRUNCATE rows,
-- nor DROP or DISABLE the append-only triggers (only a table's owner or a superuser may alter a table).
CREATE ROLE onwatch_owner LOGIN;
CREATE ROLE onwatch_app LOGIN;
