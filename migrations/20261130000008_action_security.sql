-- Secure defaults for actions and logins.
--
-- An action may declare the roles that may run it by hand (`run_roles`; NULL: every role
-- with the run permission) and whether its sandbox has network (`network`, default on:
-- automation calls other systems).
ALTER TABLE attune.action ADD COLUMN run_roles text[]
    CHECK (run_roles <@ ARRAY['admin', 'editor', 'executor']::text[]);
ALTER TABLE attune.action ADD COLUMN network boolean NOT NULL DEFAULT true;

-- Logins are unique whatever their case: `ADMIN` cannot be registered beside `admin`.
-- A database that already has logins differing only in case (possible while registration
-- was open) stops here with the logins named: rename one of each pair, then start again.
DO $$
DECLARE clashes text;
BEGIN
    SELECT string_agg(logins, '; ') INTO clashes
      FROM (SELECT string_agg(login, ', ' ORDER BY login) AS logins
              FROM attune.identity GROUP BY lower(login) HAVING count(*) > 1) c;
    IF clashes IS NOT NULL THEN
        RAISE EXCEPTION 'logins that differ only in case must be renamed before this upgrade: %', clashes;
    END IF;
END $$;
CREATE UNIQUE INDEX identity_login_ci ON attune.identity (lower(login));
