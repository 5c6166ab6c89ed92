"""Notifications: the one notify API, GET /sse/{user_id}, send-message, the notification list."""
