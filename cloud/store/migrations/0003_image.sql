-- Image service (Glance v2) projections. Every change is also an event in `events`.

CREATE TABLE img_images (
    id               text PRIMARY KEY,
    name             text,
    owner            text,                       -- project id
    status           text NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'saving', 'uploading', 'importing', 'active',
                                       'deactivated', 'killed', 'deleted', 'pending_delete')),
    visibility       text NOT NULL DEFAULT 'shared'
                     CHECK (visibility IN ('public', 'private', 'shared', 'community')),
    protected        boolean NOT NULL DEFAULT false,
    os_hidden        boolean NOT NULL DEFAULT false,
    container_format text,
    disk_format      text,
    min_disk         integer NOT NULL DEFAULT 0,
    min_ram          integer NOT NULL DEFAULT 0,
    size             bigint,
    virtual_size     bigint,
    checksum         text,                       -- md5 hex
    os_hash_algo     text,
    os_hash_value    text,
    tags             text[] NOT NULL DEFAULT '{}',
    properties       jsonb NOT NULL DEFAULT '{}', -- user (extra) properties, string values
    location         text,                       -- where the store keeps the data (internal)
    staged           text,                       -- glance-direct: staged data location (internal)
    -- Bumped by every upload attempt; a finishing upload only wins if its attempt is current.
    upload_attempt   integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz
);
CREATE INDEX img_images_owner ON img_images (owner) WHERE deleted_at IS NULL;
CREATE INDEX img_images_created ON img_images (created_at, id) WHERE deleted_at IS NULL;
CREATE INDEX img_images_visibility ON img_images (visibility) WHERE deleted_at IS NULL;

CREATE TABLE img_members (
    image_id   text NOT NULL REFERENCES img_images (id) ON DELETE CASCADE,
    member_id  text NOT NULL,                     -- project id
    status     text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'accepted', 'rejected')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (image_id, member_id)
);
CREATE INDEX img_members_member ON img_members (member_id);
