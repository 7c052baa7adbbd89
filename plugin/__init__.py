"""mailunblock.plugin."""
