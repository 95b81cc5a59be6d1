"""Benchmarks behind ``make bench``: each script measures, writes ``bench/results/<name>.json``, and
``bench/report.py`` turns those files into ``docs/benchmarks.md``."""
