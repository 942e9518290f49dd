"""One sans-I/O adapter per telephony protocol, in front of one internal audio stream."""
