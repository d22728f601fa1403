"""The Django app: what users store and see."""
