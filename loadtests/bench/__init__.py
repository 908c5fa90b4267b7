"""`asp bench`: the reference server measured against the floors of the stack beneath it."""
