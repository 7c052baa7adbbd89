"""mailunblock.connectors."""
