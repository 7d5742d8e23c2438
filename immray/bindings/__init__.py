"""Bindings: keep a dataset in sync with a folder (``file:///root/sub/``) or a bucket prefix
(``s3://bucket/prefix/``, ``oss://bucket/prefix/``), and cluster it automatically.

- ``locations``: a binding's URI judged and normalised, and its images listed with a signature each
  (size + mtime + inode for files, ETag + size for objects);
- ``service``: CreateBinding / GetBinding / ListBindings / DeleteBinding;
- ``sync``: one pass over a binding -- list, compare with what the last pass saw, index the new and changed
  images (the same index-file jobs as BatchIndexFileMeta), delete the metadata of the vanished ones;
- ``leases``: exactly one runner (of any server) holds a binding at a time, by a lease on its row;
- ``autocluster``: a FaceClustering task once a dataset with ``AutoClustering=true`` has been quiet;
- ``runner``: the background service that claims bindings, watches folders (watchdog) and re-lists every
  ``Settings.binding_scan_seconds``.
"""
