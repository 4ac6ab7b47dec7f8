-- The inquiry opener's claim: up to $1 scheduled executions of runner `inquiry` (partial
-- index execution_inquiry_scheduled), locked until the caller's transaction opens their
-- inquiries (open.sql). Another executor skips them.
SELECT id, tenant_id, parameters, secret_params
  FROM attune.execution
 WHERE status = 'scheduled' AND runner_type = 'inquiry' AND run_after <= now()
 ORDER BY id
 LIMIT $1
   FOR UPDATE SKIP LOCKED
