"""The HTTP surface: WebSocket endpoints, the REST API, Twilio's voice webhooks, uvicorn's protocol tuning."""
