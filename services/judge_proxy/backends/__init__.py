"""Judge backends: Gemini (google-genai SDK) and OpenAI-compatible chat-completions servers."""
