-- A manual run (`POST /api/v1/executions`), admitted by the API with the scheduler's rules,
-- in one statement: the execution inserted `scheduled` for the workers (its action $2 = $3,
-- runner $4; parameters admitted, secret ones masked in $5 and sealed in $6; requested by
-- identity $7, NULL for an execution's own token; $11 attempts, $12 s timeout), with the
-- same trail as a run the scheduler admits: change-log rows `execution.created` (the row as
-- requested) then `execution.status_changed` (scheduled), audit entries
-- `execution.requested` (actor type $8, id $9, login $10) then `execution.scheduled`
-- (actor `service` `executor`). One row written once, where an insert `requested` and an
-- update to `scheduled` wrote it twice (and planned a second statement per run).
-- $13: the definitions' version the action was read at, when it was read before this
-- transaction (the API's cache of actions, crates/api/src/action_cache.rs): nothing is
-- inserted, and no row returned, if an action or a rule changed since. NULL: no check.
WITH now AS (
    SELECT clock_timestamp() AS at
), created AS (
    INSERT INTO attune.execution AS e
        (tenant_id, action_id, action_ref, runner_type, parameters, secret_params, requested_by,
         max_attempts, timeout_seconds, status, scheduled_at, updated_at)
    SELECT $1, $2, $3,
           -- An action with `with_items` runs as a with-items parent, by the workflow engine.
           CASE WHEN a.with_items IS NOT NULL THEN 'workflow' ELSE $4 END,
           $5, $6, $7, $11, $12, 'scheduled', now.at, now.at
      FROM now LEFT JOIN attune.action a ON a.id = $2
     WHERE $13::bigint IS NULL OR $13 = (SELECT version FROM attune.definition_version)
    RETURNING e.id, e.tenant_id, e.action_ref, e.parameters, e.attempt, e.max_attempts, e.created_at,
              attune.execution_change(e) AS change
), logged AS (
    -- In this order (the log's ids are drawn as the rows are inserted): created, then scheduled.
    -- `execution.created` carries the row as requested: the scheduled row's message with
    -- those three fields set back. Made from the message once, not by calling
    -- execution_change on a changed row: the planner inlines that function, so its
    -- argument would be computed again for each of the message's fields.
    INSERT INTO attune.change_log (tenant_id, entity_type, entity_id, event, data)
    SELECT c.tenant_id, 'execution', c.id, s.event, s.data
      FROM created c,
           LATERAL (VALUES (1, 'execution.created',
                            ROW(jsonb_populate_record((c.change).execution, jsonb_build_object(
                                    'status', 'requested', 'scheduled_at', NULL, 'updated_at', c.created_at)),
                                NULL, NULL, NULL, NULL)::attune.change_data),
                           (2, 'execution.status_changed', c.change)) AS s(n, event, data)
     ORDER BY s.n
), audited AS (
    INSERT INTO attune.audit_log (tenant_id, actor_type, actor_id, actor_login, action, entity_type, entity_id, data)
    SELECT c.tenant_id, s.actor_type, s.actor_id, s.actor_login, s.action, 'execution', c.id::text,
           jsonb_build_object('action', c.action_ref)
      FROM created c,
           LATERAL (VALUES (1, $8, $9, $10, 'execution.requested'),
                           (2, 'service', 'executor', NULL, 'execution.scheduled'))
                AS s(n, actor_type, actor_id, actor_login, action)
     ORDER BY s.n
)
SELECT id AS "id!", parameters AS "parameters!", attempt AS "attempt!", max_attempts AS "max_attempts!",
       created_at AS "created_at!"
  FROM created
