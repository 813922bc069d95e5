"""Scale-out on Ray Serve (the optional `ray` extra): many engine replicas behind one router, one shared store.

    forwarding.py   an HTTP request as data, replayed into a replica's own app (no Ray)
    routing.py      which adapter a request is for, read from its body: the multiplexing id (no Ray)
    merged_metrics.py  every replica's /metrics as one exposition with a `replica` label (no Ray)
    deployments.py  the Serve deployments: EngineReplica (our app via serve.ingress, @serve.multiplexed) and Router
    app.py          build_app(args): the application for `serve run` and Serve config files
    launch.py       `deltaserve serve --replicas N`: a local Ray cluster running that application

Only the modules that say so import Ray, and nothing outside this package imports them, so the service and its
tests run without Ray installed.
"""
