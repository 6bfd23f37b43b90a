-- The agent's data (DESIGN.md "Agent"): what its search tool retrieves from, the changes it
-- proposes (nothing is written until the user accepts one), what the user chose to have it
-- remember, and the safety mark of a turn the guardrails answered.

-- The drill catalog and coaching notes, searched with full-text search. Rows are keyed by the
-- digest of the catalog they came from: replicas that run different catalogs (`drills_file`)
-- each search their own, and loading one at start-up never removes another's rows.
CREATE TABLE knowledge (
    catalog     text NOT NULL,
    id          text NOT NULL,            -- "drill:<drill id>" or "note:<focus id>:<n>"
    kind        text NOT NULL CHECK (kind IN ('drill', 'note')),
    title       text NOT NULL,
    body        text NOT NULL,
    focus_ids   text[] NOT NULL,
    minutes     integer,
    search      tsvector GENERATED ALWAYS AS (
                    setweight(to_tsvector('english', title), 'A')
                    || setweight(to_tsvector('english', body), 'B')) STORED,
    PRIMARY KEY (catalog, id)
);
CREATE INDEX knowledge_search ON knowledge USING gin (search);

-- A proposed write: pending until the user accepts (applied, once) or rejects it, or it
-- expires. `expired` is also what a pending row past `expires_at` reads as.
CREATE TABLE changes (
    id          text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    user_id     text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_id  text REFERENCES sessions (id) ON DELETE SET NULL,
    kind        text NOT NULL CHECK (kind IN ('focus_change', 'memory')),
    payload     jsonb NOT NULL,
    status      text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'applied', 'rejected', 'expired')),
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at  timestamptz NOT NULL,
    decided_at  timestamptz
);
CREATE INDEX changes_user ON changes (user_id, status, created_at DESC);

-- What the user accepted to have remembered; the most relevant join a turn's context.
CREATE TABLE memories (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    text        text NOT NULL,
    change_id   text UNIQUE REFERENCES changes (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    search      tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED
);
CREATE INDEX memories_user ON memories (user_id, created_at DESC);
CREATE INDEX memories_search ON memories USING gin (search);

-- A turn the guardrails answered with the safety text instead of the model: why.
ALTER TABLE interactions ADD COLUMN safety_flag text
    CHECK (safety_flag IN ('injury', 'self_harm'));
