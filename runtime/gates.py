"""Gate thresholds that force every gate one way, shared by the runtime and the training side (no imports)."""

OPEN_ALL = -1e9   # a threshold below any gate logit: every gate opens
CLOSE_ALL = 1e9   # a threshold above any gate logit: every gate stays closed
