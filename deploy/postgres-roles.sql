-- PostgreSQL roles for compliancebot: the schema's owner runs `compliancebot db upgrade`; every
-- other command (`serve`, `scan`, ...) connects as `compliancebot_app`, which can read and write
-- rows but owns nothing: it cannot ALTER, DROP or TRUNCATE a table, nor disable the triggers that
-- keep the audit trail append-only, and it may only add audit entries.
--
-- 1. As a superuser, once (choose the passwords; pass them in the environment, never a file):
--      CREATE ROLE compliancebot_owner LOGIN PASSWORD '...';
--      CREATE ROLE compliancebot_app LOGIN PASSWORD '...';
--      CREATE DATABASE compliancebot OWNER compliancebot_owner;
--      REVOKE CREATE ON SCHEMA public FROM PUBLIC;   -- (the default on PostgreSQL 15+)
-- 2. As compliancebot_owner: `compliancebot db upgrade`, then this file
--    (psql -d compliancebot -f deploy/postgres-roles.sql), and again after every upgrade that
--    adds a table.

GRANT USAGE ON SCHEMA public TO compliancebot_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO compliancebot_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO compliancebot_app;
-- The audit trail: read and append, nothing else (the triggers refuse the rest for the owner too).
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM compliancebot_app;
-- The schema version is the owner's to change.
REVOKE INSERT, UPDATE, DELETE ON alembic_version FROM compliancebot_app;
