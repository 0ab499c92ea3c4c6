"""VLM judge front (Gemini, OpenAI-compatible servers): planned, see README.md here."""
