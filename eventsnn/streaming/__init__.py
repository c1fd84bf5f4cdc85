"""Event sources and the stateful stream runner."""
