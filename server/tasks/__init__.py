"""Tasks: POST/GET/PUT/DELETE /tasks, completion, collaborators, GET /events/{id}/tasks."""
