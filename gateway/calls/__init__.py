"""One call: the registry of live calls, the per-call shell around the adapters, flows and recognition."""
