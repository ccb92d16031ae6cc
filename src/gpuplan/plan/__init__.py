"""The cluster planner: search parallel layouts (TP × PP × VPP × DP × EP × CP × ZeRO × micro-batch × recompute),
keep those the training-memory engine says fit, rank them by the step-time model, and explain the choice."""
