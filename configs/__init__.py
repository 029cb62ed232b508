"""Per-method ml_collections configs (`get_config()` with a `smoke` variant), one module each.

Added with the methods they configure (training issue); empty until then.
"""
