-- Deploy freezes: see migrations/postgres for why. Timestamps use the store's
-- fixed-width UTC text format.
CREATE TABLE freezes (
    app          TEXT NOT NULL CHECK (app <> ''),
    environment  TEXT NOT NULL CHECK (environment <> ''),
    frozen_by    TEXT NOT NULL,
    frozen_by_id TEXT,
    reason       TEXT,
    starts_at    TEXT NOT NULL,
    ends_at      TEXT NOT NULL,
    PRIMARY KEY (app, environment)
);
