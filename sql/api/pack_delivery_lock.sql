-- Serialises the deliveries of one pack (tenant $1, pack ref $2): uploads, git installs,
-- reloads and the pruning of old versions of the same pack take this transaction-scoped
-- lock before they place, re-read or remove a version directory and write the pack, so two
-- of them never decide on the same directory (or the same new ref) at once, a failed one
-- removes its directory before the next goes on, and pruning sees the version in use.
SELECT pg_advisory_xact_lock(hashtextextended('attune.pack_delivery:' || $1::bigint || ':' || $2::text, 0))
