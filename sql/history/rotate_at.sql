-- As rotate.sql at a given time $3 (tests move time forward); the owner's only.
SELECT attune.history_rotate_at($1, make_interval(secs => $2), $3) AS "open_partition!"
