-- Compute: what an admin sets on a compute service (``PUT /os-services/{id}``) beside cmp_hosts.enabled.

ALTER TABLE cmp_hosts ADD COLUMN disabled_reason text;
ALTER TABLE cmp_hosts ADD COLUMN forced_down boolean NOT NULL DEFAULT false;
