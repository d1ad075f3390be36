"""The job: spec (what to do), plan (the Ray Data pipeline), run (the driver)."""
