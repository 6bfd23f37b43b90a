-- Scheduled work (DESIGN.md "Coaching skills", "Several replicas"): each tick of a scheduled job
-- is claimed here by one process, which holds it under a lease and records how far it got, so a
-- tick runs once across every process and a claimer that dies is taken over where it stopped.

CREATE TABLE scheduled_ticks (
    job          text NOT NULL,
    tick         timestamptz NOT NULL,
    owner        text NOT NULL,
    lease_until  timestamptz NOT NULL,
    -- The last user done (users are taken in id order); '' before the first.
    cursor       text NOT NULL DEFAULT '',
    users_done   integer NOT NULL DEFAULT 0,
    claimed_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at  timestamptz,
    PRIMARY KEY (job, tick)
);

-- "Users active in the last 7 days", in user order, for a tick's batches.
CREATE INDEX sessions_active ON sessions (last_active_at, user_id);
