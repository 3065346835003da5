-- Placeholder for helper E (snapshots, shelving, console output); replaced before it is committed.
SELECT 1;
