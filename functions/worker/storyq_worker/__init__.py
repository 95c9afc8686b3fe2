"""The storyq worker: sweeps, claims within the global limit and generates stories."""
