-- RowLock.Hosting: the table of leader epochs (one row per election name).
-- LeaderElection creates it on first use (LeaderElectionOptions.CreateTable = true, the default). Where the application's
-- role may not create tables, run this script once as the schema owner, grant the application role
-- SELECT, INSERT, UPDATE on it, and set CreateTable = false.
CREATE TABLE IF NOT EXISTS rowlock_leader_epochs (
    name             text PRIMARY KEY,
    epoch            bigint NOT NULL DEFAULT 0,   -- incremented by every new leader: the fencing token
    holder           text,                        -- LeaderElectionOptions.InstanceName of the current or last leader
    acquired_at      timestamptz,                 -- when the current epoch began
    released_at      timestamptz,                 -- set when a leader resigned cleanly
    lease_expires_at timestamptz                  -- lease mode only: the current lease's end
);
