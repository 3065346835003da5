-- Compute: snapshots (createImage), shelving and console output.
--
-- snapshot_image_id: the image a createImage/shelve in progress is producing (deleted if it fails).
-- shelved_*: Nova's system_metadata of a shelved instance (its image, when, where);
-- base_image_ref: the image the server shows, kept while an unshelve boots from the shelved image.
ALTER TABLE cmp_instances
    ADD COLUMN snapshot_image_id text,
    ADD COLUMN shelved_image_id  text,
    ADD COLUMN shelved_at        timestamptz,
    ADD COLUMN shelved_host      text,
    ADD COLUMN base_image_ref    text;

-- Answers of compute hosts to console output requests, read once by the waiting API request
-- (which is woken by NOTIFY cmp_console); rows older than a minute are swept. Unlogged: a crash
-- only loses answers nobody waits for any more.
CREATE UNLOGGED TABLE cmp_console_replies (
    request_id  text PRIMARY KEY,
    instance_id text NOT NULL,
    output      text,
    error       text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
