-- Placeholder for helper D (hosts, reconciliation), used only if needed.
SELECT 1;
