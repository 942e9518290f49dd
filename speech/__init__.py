"""Speech: audio decoding, voice activity gating and offline Vosk recognition.

Nothing in this package knows about HTTP, WebSockets or the database.
"""
