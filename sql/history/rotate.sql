-- The maintenance task's cut of one history family ($1) on the server's clock: the open
-- partition and the next exist; when the open one was opened $2 seconds ago or more, the
-- family's id sequence moves on to the next range. Returns the open partition's number
-- (`attune.history_rotate`, migration 20261130000042_partitioned_history: the owner's
-- function, callable by the service role).
SELECT attune.history_rotate($1, make_interval(secs => $2)) AS "open_partition!"
