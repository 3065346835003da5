-- Compute: operations on existing instances. A resize holds a move claim (the new flavor on the
-- destination host) beside the instance's own claim in cmp_claims until it is confirmed (the move
-- claim becomes the instance's claim, the old one is given back) or reverted (the move claim is
-- given back). Host usage in cmp_hosts counts both meanwhile.

CREATE TABLE cmp_move_claims (
    instance_id  text PRIMARY KEY REFERENCES cmp_instances (id) ON DELETE CASCADE,
    source_host  text NOT NULL REFERENCES cmp_hosts (host),
    dest_host    text NOT NULL REFERENCES cmp_hosts (host),
    vcpus        integer NOT NULL,
    ram_mb       integer NOT NULL,
    disk_gb      integer NOT NULL,
    old_flavor   jsonb NOT NULL,      -- FlavorSpec before the resize (revert restores it)
    new_flavor   jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cmp_move_claims_dest ON cmp_move_claims (dest_host);

-- A move claim never outlives the instance's claim: whoever releases the claim (a delete, a
-- failed build) gives the move claim back too, without knowing about resizes.
CREATE FUNCTION cmp_release_move_claim() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    moved cmp_move_claims;
BEGIN
    DELETE FROM cmp_move_claims WHERE instance_id = OLD.instance_id RETURNING * INTO moved;
    IF FOUND THEN
        UPDATE cmp_hosts SET vcpus_used = greatest(0, vcpus_used - moved.vcpus),
                             ram_mb_used = greatest(0, ram_mb_used - moved.ram_mb),
                             disk_gb_used = greatest(0, disk_gb_used - moved.disk_gb)
         WHERE host = moved.dest_host;
    END IF;
    RETURN OLD;
END $$;
CREATE TRIGGER cmp_claims_release_move AFTER DELETE ON cmp_claims
    FOR EACH ROW EXECUTE FUNCTION cmp_release_move_claim();
