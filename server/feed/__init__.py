"""The live value feed, compatible with the LiveDataStream app: POST /add-value/, GET /events/,
GET /values."""
