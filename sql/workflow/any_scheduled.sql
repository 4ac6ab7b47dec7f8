-- Whether a workflow waits to be started (partial index execution_workflow_scheduled, no
-- lock): an idle start round costs this one round trip instead of a claim's transaction.
SELECT EXISTS (SELECT 1 FROM attune.execution
                WHERE status = 'scheduled' AND runner_type = 'workflow' AND run_after <= now()) AS "any!"
