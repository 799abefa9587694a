"""Built-in device profiles (``*.toml``), installed as package data of ``edgeadapt.devices``."""
