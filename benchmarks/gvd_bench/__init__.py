"""``gvd bench``: the runtime's latency, throughput, cold start and memory, next to the original pipeline.

A plugin of the ``gvd`` command (entry point group ``gvd.commands``), installed as the ``gvd_bench``
package from ``benchmarks/gvd_bench``: the runtime package ``edge`` never imports it. Modules:
``report`` (the typed report), ``timing`` (percentiles, processes, peak memory), ``clips`` (what is
measured), ``runs`` (gvd's measurements), ``original`` (the original pipeline, in subprocesses),
``markdown`` and ``plot`` (the written reports) and ``cli`` (the click command).
"""
