"""fedpool digits contract as a Flower App (benchmark against fedpool's network)."""
