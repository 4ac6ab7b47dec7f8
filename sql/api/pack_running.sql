-- Whether any execution of tenant $1's pack $2 (actions `$2.*`) is running or being
-- canceled: its process may be running from one of the pack's version directories, so
-- old versions are kept until none is. The condition is the partial index execution_held's.
SELECT EXISTS (
    SELECT 1 FROM attune.execution
     WHERE status IN ('running', 'canceling')
       AND tenant_id = $1 AND starts_with(action_ref, $2 || '.')
) AS "running!"
