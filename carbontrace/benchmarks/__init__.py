"""`carbontrace bench` parts: each module measures one figure next to its reference in the same run."""
