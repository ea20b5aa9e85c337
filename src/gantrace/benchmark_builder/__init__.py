"""Build a membership + attribution benchmark from real slices and generators trained on them."""
