"""mailunblock.sandbox."""
