"""Cluster providers: how Pilothouse brings a cluster into existence (local processes, import)."""
