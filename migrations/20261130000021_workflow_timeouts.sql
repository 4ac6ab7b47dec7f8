-- Running workflows, for the engine's timeout check (a workflow action's timeout_seconds
-- bounds the whole run): few rows, so the check never scans the execution table.
CREATE INDEX execution_workflow_running ON attune.execution (id)
    WHERE status = 'running' AND runner_type = 'workflow';
