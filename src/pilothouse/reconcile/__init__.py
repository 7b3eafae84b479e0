"""Level-triggered reconcilers that converge recorded desired state and reality."""
