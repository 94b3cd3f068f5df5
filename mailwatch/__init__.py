"""mailwatch."""
