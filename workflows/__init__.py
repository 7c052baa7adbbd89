"""mailunblock.workflows."""
