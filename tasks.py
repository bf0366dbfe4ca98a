from mvp_tasks import ns  # noqa: F401  (the whole CLI lives in mvp_tasks)
