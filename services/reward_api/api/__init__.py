"""The HTTP face of the reward service (FastAPI). ``main.create_app`` assembles it."""
