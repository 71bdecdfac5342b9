"""``edgecnn doctor``: where int8 loses accuracy, layer by layer, and what fixes it."""
