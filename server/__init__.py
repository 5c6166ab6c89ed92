"""The collaboration service: an aiohttp app with a live value feed and per-user SSE streams."""
