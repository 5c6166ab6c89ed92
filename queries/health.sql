-- name: ping :value
-- Liveness probe for GET /health: one round trip, touches no table.
SELECT 1;
