"""The rehearsal of the real 40-source build, offline: every source's files written at a scale
factor in its real distribution format (:mod:`.mirror`), served from 127.0.0.1 like the real
servers, faults on request (:mod:`.server`), and the real catalog pointed at that server with its
label thresholds scaled to the data (:mod:`.catalog`). ``benchmarks/rehearsal.py`` builds it through
Dagster and measures the run.

It is test and benchmark infrastructure, shipped in the package because benchmarks/ and
cytoimagenet_assets_tests/ both import it."""
