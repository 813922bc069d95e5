"""Recipes that train the demo adapters (run them as `python -m adapters.recipes.<name>`)."""
