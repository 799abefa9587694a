"""The names a user picks from at training time; torch-free, so the CLI can offer them without importing torch."""

GATE_SCOPES = ("block", "adapter", "exit")
# how an early exit decides: its own prediction's confidence (hard inputs go on), or a trained gate
EXIT_RULES = ("confidence", "learned")
# what trains and what runs; every mode but ``sparse`` is a baseline to compare the product against
MODES = ("sparse", "dense", "static", "linear-probe", "full")
