"""`carbontrace drill` parts: the running pipeline, its accounting, and the end-to-end verification."""
