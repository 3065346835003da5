-- Placeholder for helper A (servers API: description, lock, scheduler hints, reservation); replaced before it is committed.
SELECT 1;
