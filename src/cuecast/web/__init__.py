"""HTTP: the MJPEG ports, the FastAPI API and viewer, and the server runner that hosts them on one loop."""
