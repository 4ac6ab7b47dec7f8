-- Whether a process other than the caller listens for Attune's hints in this database
-- (NOTIFY reaches only the sessions of its own database): its listening connection is
-- named $1 (`attune listener %`) but not $2 (the caller's own name).
-- pg_stat_activity shows every session's application_name to every role. Run once a
-- second by each process that sends hints; while it says no, they send no NOTIFY.
SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                WHERE datname = current_database()
                  AND application_name LIKE $1 AND application_name <> $2) AS "others!"
