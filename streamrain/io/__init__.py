"""Video input and output with PyAV only (no torch here)."""
