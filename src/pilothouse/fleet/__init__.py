"""The fleet: the registry of clusters Pilothouse manages and the services around it."""
