"""Starling: the shared runtime, event contracts and tools of the stream services."""
