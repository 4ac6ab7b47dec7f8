-- The trigger an inbound RabbitMQ message names: ref $2 of tenant $1 — the tenant's own
-- triggers only, never another tenant's nor a system pack's (index trigger_ref_per_tenant).
SELECT id, ref AS trigger_ref, type AS "trigger_type: TriggerType", enabled
  FROM attune.trigger
 WHERE COALESCE(tenant_id, 0) = $1 AND ref = $2
