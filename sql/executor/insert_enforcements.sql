INSERT INTO attune.enforcement (tenant_id, rule_id, rule_ref, event_id, status, error)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::text[], $6::text[])
RETURNING id
