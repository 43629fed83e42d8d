"""The HTTP side of the streaming process: the FastAPI app (API, viewer), its guard and limits."""
