"""The `deltaserve` command: the server package's commands and the client package's, under one name.

`python -m deltaserve ...` runs the same `main` as the `deltaserve` console script (deltaserve/cli.py).
"""
