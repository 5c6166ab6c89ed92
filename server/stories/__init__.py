"""Stories: POST/GET/PUT/DELETE /stories, content edits and merges, revisions, diffs."""
