"""The Python client of the service (``kb serve``): what the web UI talks to instead of loading models itself."""
