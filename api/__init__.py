"""The read API: FastAPI over the Redis counters; never imports faust."""
