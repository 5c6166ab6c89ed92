-- name: ping
-- Liveness probe for GET /health: one round trip, touches no table.
SELECT 1;
