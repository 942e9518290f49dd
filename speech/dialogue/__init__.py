"""The form-filling dialogue engine (sans-I/O): text and keypad in, actions out."""
