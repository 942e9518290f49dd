"""Text-to-speech engines for prompts on platforms that play audio, chosen by settings."""
