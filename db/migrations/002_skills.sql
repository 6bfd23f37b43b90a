-- Coaching skills (DESIGN.md "Coaching skills"): each answer a skill gives, stored with its
-- source. A fresh model answer is served again from here until `expires_at`.

CREATE TABLE skill_results (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    skill       text NOT NULL CHECK (skill IN ('feedback', 'practice', 'insight')),
    -- What the answer is about, for "the latest of each": the subject's kind, the focus, the
    -- insight type.
    topic       text NOT NULL DEFAULT '',
    -- A digest of everything the answer depends on, the user included.
    cache_key   text NOT NULL,
    body        jsonb NOT NULL,
    source      text NOT NULL CHECK (source IN ('model', 'fallback')),
    model       text,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX skill_results_cache ON skill_results (user_id, skill, cache_key, expires_at DESC);
CREATE INDEX skill_results_latest ON skill_results (user_id, skill, topic, created_at DESC);

-- A skill's model call is a prompt run too.
ALTER TABLE prompt_runs DROP CONSTRAINT prompt_runs_purpose_check,
    ADD CONSTRAINT prompt_runs_purpose_check CHECK (purpose IN ('chat', 'assess', 'skill'));
