"""The names a user picks from at training time; torch-free, so the CLI can offer them without importing torch."""

GATE_SCOPES = ("block", "adapter", "exit")
# how an early exit decides: its own prediction's confidence (hard inputs go on), or a trained gate
EXIT_RULES = ("confidence", "learned")
EXIT_BACKBONES = ("efficientnet_lite0",)  # where exit heads and their nested Ifs are built (adapters/model.py)
# what trains and what runs; every mode but ``sparse`` is a baseline to compare the product against
MODES = ("sparse", "dense", "static", "linear-probe", "full")
# what calibration holds to the budget: the mean compute over inputs, or the median input's (what p50 latency sees)
BUDGET_STATISTICS = ("mean", "median")
# where training runs: a GPU when torch sees one, or the named kind (cuda without a GPU is refused in one line)
ACCELERATORS = ("auto", "cpu", "cuda")
DEFAULT_EPOCHS = 24  # at 16 the demo data was still under-fitted (training accuracy 0.83-0.95 at the last epoch)


def model_kind(mode: str, gate_scope: str | None) -> str:
    """How sweeps name and plots group a model: the mode, plus the gate scope for sparse models gated other
    than by block (``sparse-exit``, ``sparse-adapter``)."""
    return f"{mode}-{gate_scope}" if mode == "sparse" and gate_scope not in (None, "block") else mode
