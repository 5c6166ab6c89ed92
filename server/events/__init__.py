"""Events: POST/GET/PUT/DELETE /events (their tasks are listed by server/tasks)."""
