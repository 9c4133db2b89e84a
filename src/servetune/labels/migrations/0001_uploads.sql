-- One row per upload that a label may come back for: held out (the user labels it, the prediction is
-- hidden until then) or shown (queued for review, or open to "wrong?" feedback). No personal data: the
-- photo is known by its sha256; `key` is the sha256 of the token the client holds, never the token.
CREATE TABLE uploads (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('holdout', 'shown')),
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    model_name TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    predicted TEXT NOT NULL,
    probability DOUBLE PRECISION NOT NULL,
    top_k TEXT NOT NULL,
    photo_sha256 TEXT NOT NULL,
    photo_file TEXT,
    replica TEXT NOT NULL,
    review INTEGER NOT NULL DEFAULT 0,
    label TEXT,
    labelled_at DOUBLE PRECISION,
    feedback_label TEXT,
    feedback_at DOUBLE PRECISION,
    review_label TEXT,
    reviewed_at DOUBLE PRECISION
);
CREATE INDEX uploads_created_at ON uploads (created_at);
CREATE INDEX uploads_model_sha256 ON uploads (model_sha256);
