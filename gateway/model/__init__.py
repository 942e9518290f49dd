"""Model operations: fetch, verify and unpack the speech model, compile its static decoding graph."""
