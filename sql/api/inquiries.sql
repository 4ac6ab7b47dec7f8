-- The tenant's ($1) inquiries, newest first: one by id ($2), or a page of those with
-- status $3 (any status when NULL), $4 rows from $5. `responded_by_login` names who
-- answered.
SELECT i.id, i.execution_id, i.prompt, i.schema, i.status, i.response, i.default_response, i.roles, i.users,
       i.expires_at, i.responded_by, who.login AS "responded_by_login?", i.responded_at, i.created_at
  FROM attune.inquiry i
  LEFT JOIN attune.identity who ON who.id = i.responded_by
 WHERE i.tenant_id = $1 AND ($2::bigint IS NULL OR i.id = $2) AND ($3::text IS NULL OR i.status = $3)
 ORDER BY i.id DESC
 LIMIT $4 OFFSET $5
