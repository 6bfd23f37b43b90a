-- Coach Gateway schema, version 1 (DESIGN.md "Data").

CREATE TABLE users (
    id          text PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE focuses (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    description text NOT NULL DEFAULT ''
);

INSERT INTO focuses (id, name, description) VALUES
    ('pacing', 'Pacing', 'Speaking rate and pauses: neither rushed nor dragging.'),
    ('clarity', 'Clarity', 'Plain words, one idea per sentence, easy to follow.'),
    ('filler_words', 'Filler words', 'Few "um", "uh", "like", "you know".'),
    ('pitch_accuracy', 'Pitch accuracy', 'Singing or speaking on the intended pitch.'),
    ('breathing', 'Breathing', 'Breath support and phrasing around breaths.'),
    ('structure', 'Structure', 'A clear opening, body and close; signposting.');

-- At most 3 active focuses per user, ordered 1-3: the position is unique among active rows.
CREATE TABLE user_focuses (
    user_id     text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    focus_id    text NOT NULL REFERENCES focuses (id),
    position    smallint CHECK (position BETWEEN 1 AND 3),
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, focus_id),
    CHECK (active = (position IS NOT NULL))
);
CREATE UNIQUE INDEX user_focuses_active_position ON user_focuses (user_id, position) WHERE active;

CREATE TABLE sessions (
    id              text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    user_id         text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    opened_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_active_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    closed_at       timestamptz
);
CREATE INDEX sessions_user_recent ON sessions (user_id, last_active_at DESC);
CREATE INDEX sessions_user_opened ON sessions (user_id, opened_at DESC, id DESC);
CREATE INDEX sessions_open_idle ON sessions (last_active_at) WHERE closed_at IS NULL;

CREATE TABLE interactions (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id       text NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    user_id          text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    turn_id          text NOT NULL,
    request_id       text NOT NULL,
    channel          text NOT NULL,
    user_text        text NOT NULL,
    reply_text       text NOT NULL,
    status           text NOT NULL CHECK (status IN ('completed', 'failed', 'cancelled')),
    finish_reason    text NOT NULL DEFAULT '',
    error_code       text,
    input_tokens     integer NOT NULL DEFAULT 0,
    output_tokens    integer NOT NULL DEFAULT 0,
    ttft_ms          double precision,
    upstream_ttft_ms double precision,
    total_ms         double precision NOT NULL,
    first_audio_ms   double precision,
    audio_in_ms      integer NOT NULL DEFAULT 0,
    provider         text,
    model            text,
    fallbacks        jsonb NOT NULL DEFAULT '[]',
    focus_ids        text[] NOT NULL DEFAULT '{}',
    -- Where the assessment pipeline is with this turn; `assess_job_id` is the job that took it.
    assess_state     text NOT NULL DEFAULT 'pending'
                     CHECK (assess_state IN ('pending', 'skipped', 'buffered', 'claimed', 'assessed')),
    assess_job_id    bigint,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX interactions_session ON interactions (session_id, id);
CREATE INDEX interactions_user ON interactions (user_id, created_at);
CREATE INDEX interactions_buffered ON interactions (session_id) WHERE assess_state = 'buffered';
CREATE UNIQUE INDEX interactions_request ON interactions (request_id) WHERE request_id <> '';

-- The outbox: one row per unit of assessment work, claimed with a lease.
CREATE TABLE assessment_jobs (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind           text NOT NULL CHECK (kind IN ('turn', 'session_summary')),
    scope          text CHECK (scope IN ('none', 'buffer', 'interaction', 'multi_turn', 'session_summary')),
    user_id        text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_id     text NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    interaction_id bigint REFERENCES interactions (id) ON DELETE CASCADE,
    status         text NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'running', 'done', 'failed')),
    attempts       integer NOT NULL DEFAULT 0,
    run_after      timestamptz NOT NULL DEFAULT now(),
    lease_until    timestamptz,
    last_error     text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'turn') = (interaction_id IS NOT NULL))
);
CREATE INDEX assessment_jobs_claimable ON assessment_jobs (id) WHERE status IN ('pending', 'running');
CREATE INDEX assessment_jobs_session ON assessment_jobs (session_id);

CREATE TABLE assessments (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id          bigint NOT NULL REFERENCES assessment_jobs (id) ON DELETE CASCADE,
    user_id         text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_id      text NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    interaction_ids bigint[] NOT NULL DEFAULT '{}',
    focus_id        text NOT NULL REFERENCES focuses (id),
    kind            text NOT NULL CHECK (kind IN ('interaction', 'multi_turn', 'session_summary')),
    category        text NOT NULL CHECK (category IN ('error', 'progress')),
    score           smallint CHECK (score BETWEEN 1 AND 10),
    explanation     text NOT NULL DEFAULT '',
    errors          jsonb NOT NULL DEFAULT '[]',
    tags            text[] NOT NULL DEFAULT '{}',
    group_id        uuid,
    rubric_version  text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- A re-run of a job after a crash writes nothing twice.
    CONSTRAINT assessments_job_focus UNIQUE (job_id, focus_id)
);
CREATE INDEX assessments_user ON assessments (user_id, created_at DESC);
CREATE INDEX assessments_session ON assessments (session_id, id DESC);
CREATE INDEX assessments_focus ON assessments (user_id, focus_id, created_at DESC)
    WHERE category = 'progress' AND score IS NOT NULL;
CREATE INDEX assessments_kind ON assessments (kind);
CREATE INDEX assessments_created ON assessments (created_at);
CREATE INDEX assessments_group ON assessments (group_id) WHERE group_id IS NOT NULL;

CREATE TABLE prompt_runs (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id      text NOT NULL,
    purpose         text NOT NULL CHECK (purpose IN ('chat', 'assess')),
    user_id         text,
    session_id      text,
    job_id          bigint,
    provider        text,
    model           text,
    rubric_version  text,
    input_tokens    integer NOT NULL DEFAULT 0,
    output_tokens   integer NOT NULL DEFAULT 0,
    ttft_ms         double precision,
    latency_ms      double precision NOT NULL,
    cost_usd        double precision NOT NULL DEFAULT 0,
    status          text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX prompt_runs_created ON prompt_runs (created_at);
CREATE INDEX prompt_runs_request ON prompt_runs (request_id);

CREATE TABLE budgets (
    day     date NOT NULL,
    target  text NOT NULL,
    usd     double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (day, target)
);
