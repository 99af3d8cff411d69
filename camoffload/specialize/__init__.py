"""``camoffload specialize``: a camera's own early-exit model, taught by the cloud."""
