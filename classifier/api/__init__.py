"""The REST API (Django REST framework): thin views over the same services and selectors."""
