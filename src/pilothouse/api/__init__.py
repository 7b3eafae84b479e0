"""The REST API (FastAPI): one router per capability, one authorisation check."""
