-- Compute: the servers API's remaining fields (description 2.19, lock 2.73, scheduler hints,
-- multi-create reservation, hostname 2.90, the networks a boot asked for) and the indexes its list
-- filters use, so a detail page stays one indexed query.

ALTER TABLE cmp_instances
    ADD COLUMN scheduler_hints jsonb NOT NULL DEFAULT '{}',   -- os:scheduler_hints as given
    ADD COLUMN description     text,
    ADD COLUMN locked_by       text CHECK (locked_by IN ('owner', 'admin')),
    ADD COLUMN locked_reason   text,
    ADD COLUMN reservation_id  text NOT NULL DEFAULT ('r-' || substr(md5(random()::text), 1, 8)),
    ADD COLUMN launch_index    integer NOT NULL DEFAULT 0,
    ADD COLUMN hostname        text,
    ADD COLUMN networks        text;                           -- 'auto' or 'none' (as asked)

-- Admin listings across projects (all_tenants) page in the same order as project listings.
CREATE INDEX cmp_instances_all ON cmp_instances (created_at DESC, id DESC) WHERE deleted_at IS NULL;
-- changes-since / changes-before scan by update time, deleted servers included.
CREATE INDEX cmp_instances_updated ON cmp_instances (updated_at);
CREATE INDEX cmp_instances_reservation ON cmp_instances (reservation_id);
CREATE INDEX cmp_instances_tags ON cmp_instances USING gin (tags);
