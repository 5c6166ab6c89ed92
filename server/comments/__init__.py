"""Comments on stories: POST/GET/PUT/DELETE /comments, their history, a story's thread."""
