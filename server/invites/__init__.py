"""Invites: POST /invites, GET /invites/received|sent/{user_id}, PATCH /invites/{invite_id}."""
