-- Placeholder for helper B (instance operations: resize claims, action records); replaced before it is committed.
SELECT 1;
