-- Rotation: one batch of executions' secret parameters re-sealed (the new blobs carry the
-- new version in their header). Compare-and-swap on the old blob, as reseal_items.sql.
UPDATE attune.execution AS e
   SET secret_params = r.new_blob
  FROM unnest($1::bigint[], $2::bytea[], $3::bytea[]) AS r (id, old_blob, new_blob)
 WHERE e.id = r.id AND e.secret_params = r.old_blob
