"""The worker: faust integration, the batch pipeline, partition incarnations, metrics."""
