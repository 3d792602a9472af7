"""Development tools: the embedded broker and valkey, the producer, the simulator."""
