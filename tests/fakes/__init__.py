"""Fake providers: real servers on loopback speaking the providers' own protocols."""
