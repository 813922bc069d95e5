"""Demo adapters and the recipes that train them; the default adapter store lives in adapters/store."""
