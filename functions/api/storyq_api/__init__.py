"""The storyq HTTP API: FastAPI routes behind API Gateway through Mangum."""
