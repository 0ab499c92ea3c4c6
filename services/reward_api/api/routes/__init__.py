"""One router per file: scoring, the OpenRLHF adapter, health and metrics."""
