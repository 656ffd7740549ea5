"""Training: the recipe (recipe.py) reads top to bottom; the rest are its parts."""
