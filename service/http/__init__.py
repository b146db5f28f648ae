"""The HTTP edge: the FastAPI app and its lifespan, the routes, the dependencies, the ASGI
middleware (request ids, access log, upload size), uvicorn's protocol with per-connection limits,
the API keys, the response schemas, and the one table (`errors.py`) that turns every domain error
into a status code, an error code and a Retry-After. Nothing outside this package names an HTTP
status."""
