-- Placeholder for helper C (aggregates, server groups, quotas); replaced before it is committed.
SELECT 1;
