"""Serving plans: from traffic and latency targets to GPUs, parallel layout, batch and cost per million tokens."""
