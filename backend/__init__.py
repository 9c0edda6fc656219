"""Label Studio ML backend service (HTTP routes, Label Studio client, jobs, state)."""
