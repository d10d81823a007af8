"""Pages to look at: ``report.html`` for a run folder and for a benchmark folder.

- ``page``: the one template, its blocks (viewer, video, image, table…) and the vendored
  ``<model-viewer>``;
- ``run_page``: a run's page (``write_run_report``), written at the end of a run and by
  ``ssd3d export``;
- ``bench_page``: a benchmark's page (``write_bench_report``), written after its table;
- ``serve``: ``ssd3d view``'s local web server;
- ``browser``: the system's headless Chromium, for the tests and the screenshot script.

Pages work offline and from disk (``file://``): no CDN, the mesh inlined as a data URI.
Submodules are imported by name (nothing here), so that ``toyworld.bench_report`` can use
``page``'s tables without importing the pages that import it.
"""
