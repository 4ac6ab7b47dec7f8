-- The event pipeline: secret parameters sealed at rest, and the wake-ups of its stages.

-- Secret parameters (those an action marks `secret: true`) are kept AES-256-GCM sealed
-- here for the worker; `parameters` holds them masked.
ALTER TABLE attune.execution ADD COLUMN secret_params bytea;

-- New executions wake the scheduler, once per statement.
CREATE TRIGGER execution_inserted AFTER INSERT ON attune.execution
    FOR EACH STATEMENT EXECUTE FUNCTION attune.notify_channel('attune_requested');

-- The rule engine caches enabled rules with their actions. Every change to either bumps
-- this version in the changing transaction; the engine reads it after each claim and
-- reloads when it moved, so a disabled rule never fires again, whenever the NOTIFY arrives.
CREATE TABLE attune.definition_version (
    id       boolean PRIMARY KEY DEFAULT true CHECK (id),
    version  bigint NOT NULL DEFAULT 0
);
INSERT INTO attune.definition_version DEFAULT VALUES;
GRANT SELECT, UPDATE ON attune.definition_version TO attune_api;

CREATE FUNCTION attune.bump_definition_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE attune.definition_version SET version = version + 1;
    PERFORM pg_notify('attune_rule', '');
    RETURN NULL;
END $$;
CREATE TRIGGER rule_version AFTER INSERT OR UPDATE OR DELETE ON attune.rule
    FOR EACH STATEMENT EXECUTE FUNCTION attune.bump_definition_version();
CREATE TRIGGER action_version AFTER INSERT OR UPDATE OR DELETE ON attune.action
    FOR EACH STATEMENT EXECUTE FUNCTION attune.bump_definition_version();
