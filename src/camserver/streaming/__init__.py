"""The streams themselves: each one's hub (``hub``) and demand (``demand``), the
configuration registry (``registry``), where sources run (``placement``), viewer
admission (``admission``) and snapshots (``snapshots``)."""
