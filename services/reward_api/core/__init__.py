"""Settings, result model and errors shared by every layer of the reward API."""
