"""Events: POST/GET/PUT/DELETE /events, GET /events/{id}/tasks."""
