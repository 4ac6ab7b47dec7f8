-- Audit entries, many at once (one per element of the arrays).
INSERT INTO attune.audit_log (tenant_id, actor_type, actor_id, actor_login, action, entity_type, entity_id, data)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::jsonb[])
