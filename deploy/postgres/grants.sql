-- Run as onwatch_owner in the onwatch database after every `onwatch migrate`
-- (psql -v ON_ERROR_STOP=1 -d onwatch -U onwatch_owner -f grants.sql). Idempotent.
GRANT USAGE ON SCHEMA public TO onwatch_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO onwatch_app;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO onwatch_app;
-- the audit trail: read and append, nothing else
REVOKE ALL ON audit_event FROM onwatch_app;
GRANT SELECT, INSERT ON audit_event TO onwatch_app;
-- the schema version is the owner's to move
REVOKE ALL ON alembic_version FROM onwatch_app;
GRANT SELECT ON alembic_version TO onwatch_app;
