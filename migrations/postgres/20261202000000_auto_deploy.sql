-- Auto-deploy on green CI: one row per app+environment+sha that faseng decided
-- to deploy. The primary key is what makes "exactly one deployment per sha and
-- environment" hold across faseng processes: the first INSERT wins.
CREATE TABLE auto_deploys (
    app                  TEXT NOT NULL,
    environment          TEXT NOT NULL,
    sha                  TEXT NOT NULL,
    contexts             TEXT NOT NULL,
    github_deployment_id BIGINT,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (app, environment, sha)
);

CREATE INDEX auto_deploys_latest ON auto_deploys (app, environment, created_at DESC);

-- Auto-deploy paused for an environment, by whom and why.
CREATE TABLE auto_deploy_pauses (
    app         TEXT NOT NULL,
    environment TEXT NOT NULL,
    paused_by   TEXT NOT NULL,
    reason      TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (app, environment)
);
