-- Everything a batch of events produced, in one statement: the enforcements (one per
-- matching rule; `failed` ones carry the template error), the execution of each processed
-- one — already admitted by the engine, so `scheduled` (or `failed` with the reason) —
-- their audit entries (requested, then scheduled or failed), their change-log rows
-- (enforcement.created, execution.created, and rule.triggered for rules that ask for it),
-- and the events marked processed.
-- $1..$6 describe the enforcements; $7..$17 the executions, keyed by (rule, event).
WITH enf AS (
    INSERT INTO attune.enforcement AS f (tenant_id, rule_id, rule_ref, event_id, status, error)
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::text[], $6::text[])
    RETURNING f.id, f.tenant_id, f.rule_id, f.rule_ref, f.event_id, attune.enforcement_change(f) AS change
), runs AS (
    SELECT * FROM unnest($7::bigint[], $8::bigint[], $9::bigint[], $10::text[], $11::text[], $12::jsonb[], $13::bytea[],
                         $14::text[], $15::jsonb[], $16::int[], $17::int[])
        AS r(rule_id, event_id, action_id, action_ref, runner_type, parameters, secret_params,
             status, result, max_attempts, timeout_seconds)
), created AS (
    INSERT INTO attune.execution AS e
        (tenant_id, action_id, action_ref, runner_type, parameters, secret_params, enforcement_id, rule_id, rule_ref,
         status, result, max_attempts, timeout_seconds, scheduled_at, finished_at)
    SELECT enf.tenant_id, runs.action_id, runs.action_ref,
           -- An action with `with_items` runs as a with-items parent, by the workflow engine.
           CASE WHEN a.with_items IS NOT NULL THEN 'workflow' ELSE runs.runner_type END,
           runs.parameters, runs.secret_params,
           enf.id, enf.rule_id, enf.rule_ref, runs.status, runs.result, runs.max_attempts, runs.timeout_seconds,
           CASE WHEN runs.status = 'scheduled' THEN clock_timestamp() END,
           CASE WHEN runs.status = 'failed' THEN clock_timestamp() END
      FROM enf JOIN runs ON runs.rule_id = enf.rule_id AND runs.event_id = enf.event_id
      LEFT JOIN attune.action a ON a.id = runs.action_id
    RETURNING e.id, e.tenant_id, e.action_ref, e.rule_ref, e.enforcement_id, e.status, e.result,
              attune.execution_change(e) AS change
), audited AS (
    INSERT INTO attune.audit_log (tenant_id, actor_type, actor_id, action, entity_type, entity_id, data)
    SELECT c.tenant_id, 'service', 'executor', step.action, 'execution', c.id::text, step.data
      FROM created c,
           LATERAL (VALUES
               ('execution.requested', jsonb_build_object('action', c.action_ref, 'rule', c.rule_ref, 'enforcement_id', c.enforcement_id)),
               ('execution.' || c.status, CASE WHEN c.result IS NULL THEN jsonb_build_object('action', c.action_ref)
                                               ELSE jsonb_build_object('action', c.action_ref, 'error', c.result -> 'error') END)
           ) AS step(action, data)
), logged AS (
    INSERT INTO attune.change_log (tenant_id, entity_type, entity_id, event, data)
    SELECT tenant_id, entity_type, entity_id, event, data FROM (
        SELECT enf.tenant_id, 'enforcement' AS entity_type, enf.id AS entity_id, 'enforcement.created' AS event,
               enf.change AS data, 1 AS kind, enf.id AS seq
          FROM enf
        UNION ALL
        SELECT enf.tenant_id, 'rule', enf.rule_id, 'rule.triggered',
               attune.change_other(json_build_object('rule_id', enf.rule_id, 'rule_ref', enf.rule_ref,
                   'enforcement_id', enf.id, 'event_id', enf.event_id, 'event', ev.payload, 'trigger_ref', ev.trigger_ref)),
               2, enf.id
          FROM enf
          JOIN attune.rule r ON r.id = enf.rule_id AND r.notify_on_trigger
          JOIN attune.event ev ON ev.id = enf.event_id
        UNION ALL
        SELECT c.tenant_id, 'execution', c.id, 'execution.created', c.change, 3, c.id FROM created c
    ) AS changes
    ORDER BY kind, seq
)
UPDATE attune.event SET processed_at = clock_timestamp() WHERE id = ANY($18)
