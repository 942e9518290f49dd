"""The gateway: an async Starlette server in front of speech and scheduler."""
