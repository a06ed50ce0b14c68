"""Recording: a viewer of the hub that keeps frames on disk (``docs/recording.md``)."""
