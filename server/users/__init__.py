"""Users and authentication: /users, /auth/token."""
