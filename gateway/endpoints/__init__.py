"""HTTP surface: OpenAI endpoints, operations endpoints, admin API."""
