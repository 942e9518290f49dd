"""Channels: one module per provider (SMS, WeChat, voice call), each behind the interface in base.py."""
