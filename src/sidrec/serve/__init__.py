"""``sidrec serve``: the HTTP service (FastAPI) around :class:`sidrec.api.Recommender`.

:mod:`sidrec.serve.backends` holds the per-method backends the Recommender runs;
:mod:`sidrec.serve.app` the web app, :mod:`sidrec.serve.batching` the micro-batcher.
"""
