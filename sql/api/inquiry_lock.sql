-- Inquiry $1 of tenant $2, locked for an answer: the expiry (sql/inquiry/expire.sql) and
-- the cancel (sql/inquiry/cancel.sql) lock the same row first, so exactly one of them
-- wins and they never deadlock. With what the answer is checked against.
SELECT id, execution_id, status, schema, roles, users
  FROM attune.inquiry
 WHERE id = $1 AND tenant_id = $2
   FOR UPDATE
