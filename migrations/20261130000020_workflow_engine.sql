-- The workflow engine (executor): what it needs beyond the core model's workflow_state.
--
-- * execution.consumed_at: when the parent workflow took in this child's end. Children
--   finished but not yet consumed are the engine's work set (partial index below), so it
--   never scans workflows that have nothing new.
-- * workflow_state: nesting depth, children created and not yet consumed (`active`), the
--   abort reason, with-items lists, and `wants_step` (more with-items children to create:
--   they are created in batches, one transaction each).
-- * An execution of an action with an action-level `with_items` (T1.5) that is not itself
--   an item (item_index NULL) is a with-items parent: it is run by the workflow engine,
--   so it is stored with runner_type `workflow` whichever path created it.

ALTER TABLE attune.execution ADD COLUMN consumed_at timestamptz;

CREATE INDEX execution_unconsumed ON attune.execution (parent_id)
    WHERE parent_id IS NOT NULL AND consumed_at IS NULL
      AND status IN ('succeeded', 'failed', 'canceled', 'succeeded_with_errors');
CREATE INDEX execution_workflow_scheduled ON attune.execution (id)
    WHERE status = 'scheduled' AND runner_type = 'workflow';
CREATE INDEX execution_workflow_canceling ON attune.execution (id)
    WHERE status = 'canceling' AND runner_type = 'workflow';

ALTER TABLE attune.workflow_state
    ADD COLUMN tenant_id  bigint REFERENCES attune.tenant (id) ON DELETE CASCADE,
    ADD COLUMN depth      integer NOT NULL DEFAULT 0,
    ADD COLUMN active     integer NOT NULL DEFAULT 0,
    ADD COLUMN abort_error text,
    ADD COLUMN items      jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN wants_step boolean NOT NULL DEFAULT false;
CREATE INDEX workflow_state_wants_step ON attune.workflow_state (execution_id) WHERE wants_step;

CREATE FUNCTION attune.with_items_parent() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = attune, pg_temp AS $$
BEGIN
    IF NEW.item_index IS NULL AND NEW.runner_type <> 'workflow' AND NEW.action_id IS NOT NULL
       AND EXISTS (SELECT 1 FROM attune.action a WHERE a.id = NEW.action_id AND a.with_items IS NOT NULL) THEN
        NEW.runner_type := 'workflow';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER with_items_parent BEFORE INSERT ON attune.execution
    FOR EACH ROW EXECUTE FUNCTION attune.with_items_parent();
