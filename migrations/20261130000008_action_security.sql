-- Secure defaults for actions and logins.
--
-- An action may declare the roles that may run it by hand (`run_roles`; NULL: every role
-- with the run permission) and whether its sandbox has network (`network`, default on:
-- automation calls other systems).
ALTER TABLE attune.action ADD COLUMN run_roles text[]
    CHECK (run_roles <@ ARRAY['admin', 'editor', 'executor']::text[]);
ALTER TABLE attune.action ADD COLUMN network boolean NOT NULL DEFAULT true;

-- Logins are unique whatever their case: `ADMIN` cannot be registered beside `admin`.
CREATE UNIQUE INDEX identity_login_ci ON attune.identity (lower(login));
