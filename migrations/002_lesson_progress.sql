-- The example tutor tool `mark_step_complete` records lesson progress here. The idempotency key
-- (session id + call id) makes a retried tool activity change the row once.
CREATE TABLE lesson_progress (
    idempotency_key text PRIMARY KEY,
    session_id      text NOT NULL,
    lesson_id       text NOT NULL,
    step            integer NOT NULL CHECK (step > 0),
    completed_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX lesson_progress_session ON lesson_progress (session_id, lesson_id, step);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'earpiece_app') THEN
        GRANT SELECT, INSERT ON lesson_progress TO earpiece_app;
    END IF;
END
$$;
