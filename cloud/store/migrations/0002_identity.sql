-- Identity (Keystone v3) projections. Every change is also an event in `events`.

CREATE TABLE id_domains (
    id          text PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    description text NOT NULL DEFAULT '',
    enabled     boolean NOT NULL DEFAULT true,
    extra       jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE id_projects (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    domain_id   text NOT NULL REFERENCES id_domains (id),
    parent_id   text REFERENCES id_projects (id),
    description text NOT NULL DEFAULT '',
    enabled     boolean NOT NULL DEFAULT true,
    tags        text[] NOT NULL DEFAULT '{}',
    extra       jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (domain_id, name)
);
CREATE INDEX id_projects_parent ON id_projects (parent_id);

CREATE TABLE id_users (
    id                  text PRIMARY KEY,
    name                text NOT NULL,
    domain_id           text NOT NULL REFERENCES id_domains (id),
    enabled             boolean NOT NULL DEFAULT true,
    password_hash       text,
    password_changed_at timestamptz,
    password_expires_at timestamptz,
    default_project_id  text,
    description         text,
    extra               jsonb NOT NULL DEFAULT '{}',
    options             jsonb NOT NULL DEFAULT '{}',
    failed_auth_count   integer NOT NULL DEFAULT 0,
    failed_auth_at      timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (domain_id, name)
);

CREATE TABLE id_groups (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    domain_id   text NOT NULL REFERENCES id_domains (id),
    description text NOT NULL DEFAULT '',
    extra       jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (domain_id, name)
);

CREATE TABLE id_group_members (
    group_id text NOT NULL REFERENCES id_groups (id) ON DELETE CASCADE,
    user_id  text NOT NULL REFERENCES id_users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX id_group_members_user ON id_group_members (user_id);

-- domain_id NULL: a global role; otherwise a domain-specific role. '' keeps the unique index simple.
CREATE TABLE id_roles (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    domain_id   text REFERENCES id_domains (id),
    description text,
    options     jsonb NOT NULL DEFAULT '{}',
    extra       jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX id_roles_name ON id_roles (coalesce(domain_id, ''), name);

CREATE TABLE id_implied_roles (
    prior_role_id   text NOT NULL REFERENCES id_roles (id) ON DELETE CASCADE,
    implied_role_id text NOT NULL REFERENCES id_roles (id) ON DELETE CASCADE,
    PRIMARY KEY (prior_role_id, implied_role_id)
);

-- One grant: an actor (user or group) holds a role on a target (project, domain or system 'all').
CREATE TABLE id_assignments (
    actor_type  text NOT NULL CHECK (actor_type IN ('user', 'group')),
    actor_id    text NOT NULL,
    target_type text NOT NULL CHECK (target_type IN ('project', 'domain', 'system')),
    target_id   text NOT NULL,
    role_id     text NOT NULL REFERENCES id_roles (id) ON DELETE CASCADE,
    inherited   boolean NOT NULL DEFAULT false,
    PRIMARY KEY (actor_type, actor_id, target_type, target_id, role_id, inherited)
);
CREATE INDEX id_assignments_target ON id_assignments (target_type, target_id);
CREATE INDEX id_assignments_role ON id_assignments (role_id);

CREATE TABLE id_regions (
    id               text PRIMARY KEY,
    description      text NOT NULL DEFAULT '',
    parent_region_id text REFERENCES id_regions (id),
    extra            jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE id_services (
    id          text PRIMARY KEY,
    type        text NOT NULL,
    name        text,
    description text,
    enabled     boolean NOT NULL DEFAULT true,
    extra       jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE id_endpoints (
    id         text PRIMARY KEY,
    service_id text NOT NULL REFERENCES id_services (id),
    region_id  text REFERENCES id_regions (id),
    interface  text NOT NULL CHECK (interface IN ('public', 'internal', 'admin')),
    url        text NOT NULL,
    enabled    boolean NOT NULL DEFAULT true,
    extra      jsonb NOT NULL DEFAULT '{}'
);

-- blob is Fernet-encrypted with the credential keys (it holds secrets, e.g. EC2's).
CREATE TABLE id_credentials (
    id         text PRIMARY KEY,
    user_id    text NOT NULL REFERENCES id_users (id) ON DELETE CASCADE,
    project_id text,
    type       text NOT NULL,
    blob       text NOT NULL,
    key_hash   text,
    extra      jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX id_credentials_user ON id_credentials (user_id);
-- EC2 access keys are looked up by the access id on every signed request.
CREATE UNIQUE INDEX id_credentials_ec2_access ON id_credentials (key_hash) WHERE key_hash IS NOT NULL;

CREATE TABLE id_app_credentials (
    id           text PRIMARY KEY,
    name         text NOT NULL,
    user_id      text NOT NULL REFERENCES id_users (id) ON DELETE CASCADE,
    project_id   text NOT NULL REFERENCES id_projects (id) ON DELETE CASCADE,
    secret_hash  text NOT NULL,
    description  text,
    expires_at   timestamptz,
    unrestricted boolean NOT NULL DEFAULT false,
    roles        text[] NOT NULL DEFAULT '{}',
    access_rules jsonb NOT NULL DEFAULT '[]',
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, name)
);

-- Tokens are not stored; a revocation names what it kills and everything issued before it.
CREATE TABLE id_revocations (
    seq           bigserial PRIMARY KEY,
    audit_id      text,
    user_id       text,
    project_id    text,
    domain_id     text,
    app_cred_id   text,
    issued_before timestamptz NOT NULL,
    revoked_at    timestamptz NOT NULL DEFAULT now(),
    -- Nothing issued before this can still be alive after it; the row may be pruned then.
    expires_at    timestamptz NOT NULL
);
